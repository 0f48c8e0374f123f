"""Self-service pages: forgotten password, notification settings, service requests.

The rules live in rating.selfservice and rating.requests; the views only
call them. Every change is a POST with a CSRF token; a viewer may look at
the settings and the requests but not change them.

The password reset never says whether a login exists: the form answers the
same for every input, and the mail goes out from a background thread, so
the SMTP round trip does not show in the answer's timing either. The token
reaches only the mail: it is never logged, and the access log line of the
link has it masked.
"""

from __future__ import annotations

import logging
import re
import smtplib
import threading
import uuid

from flask import (Blueprint, Flask, abort, current_app, flash, jsonify, redirect,
                   render_template, request, session as browser_session, url_for)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import current_user, login_required, logout_user
from flask_wtf import FlaskForm
from flask_wtf.csrf import CSRFProtect
from wtforms import (DecimalField, HiddenField, PasswordField, SelectField,
                     SelectMultipleField, StringField, TextAreaField)
from wtforms.validators import DataRequired, EqualTo, Length, Optional
from wtforms.widgets import CheckboxInput, ListWidget

try:  # WTForms 3.3 deprecates (value, label) tuples as choices
    from wtforms.fields.choices import SelectChoice
except ImportError:  # pragma: no cover - older WTForms
    def SelectChoice(value, label):  # noqa: N802
        return (value, label)

from cabinet import labels
from cabinet.app import db
from cabinet.views import own_account
from config.db import utcnow
from rating import requests as service_requests
from rating import selfservice
from rating.accounts import DomainError
from rating.notify import EmailChannel

log = logging.getLogger(__name__)

blueprint = Blueprint("selfservice", __name__)


def log_out_keeping_language() -> None:
    """End this browser's login and its session data, keeping only the
    language chosen (after a password is set, the next login is fresh)."""
    lang = browser_session.get("lang")
    logout_user()
    browser_session.clear()
    if lang:
        browser_session["lang"] = lang

FORGOT_LIMITS = "5 per minute;20 per hour"
FORGOT_ADDRESS_LIMITS = "30 per minute"
RESET_ADDRESS_LIMITS = "20 per minute"

CHANNELS = {"email": _l("E-mail"), "sms": _l("SMS"), "telegram": _l("Telegram")}
TOPICS = {"no_connection": _l("No connection"), "slow_speed": _l("Slow speed"),
          "billing": _l("Billing question"), "move": _l("Moving to a new address"),
          "other": _l("Other")}
STATUSES = {"new": _l("new"), "in_progress": _l("in progress"), "done": _l("done"),
            "rejected": _l("rejected")}

# rating's sentences for these pages, marked for translation
# (cabinet.labels.error_text translates them).
DOMAIN_MESSAGES = (
    _l("this password reset link is not valid"),
    _l("this password reset link has already been used"),
    _l("this password reset link has expired"),
    _l("a notification channel must be e-mail, SMS or Telegram"),
    _l("a Telegram chat id is a number like 123456789"),
    _l("the low-balance threshold must be an amount like 100 or 99.50"),
    _l("the low-balance threshold must be between 0 and 100000"),
    _l("notices by e-mail need an e-mail address in the contacts"),
    _l("notices by SMS need a mobile phone number in the contacts"),
    _l("notices in Telegram need a Telegram chat id"),
    _l("choose the request's topic from the list"),
    _l("describe the request in 1 to 2000 characters"),
    _l("the form is incomplete; reload the page and try again"),
    _l("there are 10 open requests already; please wait for an answer"),
    _l("a message must be 1 to 2000 characters long"),
    _l("this request is closed; please add a new one"),
)


# -- forms -----------------------------------------------------------------------

def _choices(labels_by_code: dict) -> list:
    return [SelectChoice(code, label) for code, label in labels_by_code.items()]


class ForgotForm(FlaskForm):
    identifier = StringField(_l("Account number or login"),
                             validators=[DataRequired(), Length(max=64)])


class ResetForm(FlaskForm):
    token = HiddenField(validators=[DataRequired(), Length(max=128)])
    new = PasswordField(_l("New password"), validators=[DataRequired(), Length(max=256)])
    confirm = PasswordField(_l("New password again"), validators=[
        DataRequired(), EqualTo("new", message=_l("The two new passwords differ."))])


class CheckboxesField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class NotificationsForm(FlaskForm):
    # The choices are checked by rating.selfservice, with its sentence.
    channels = CheckboxesField(_l("Send notices by"), choices=_choices(CHANNELS),
                               validate_choice=False)
    low_balance_threshold = DecimalField(_l("Warn when the balance is below"), places=2,
                                         validators=[Optional()])
    telegram_chat_id = StringField(_l("Telegram chat id"),
                                   validators=[Optional(), Length(max=64)])


class RequestForm(FlaskForm):
    """``request_id`` is made when the page is drawn: a form sent twice adds
    one request."""

    topic = SelectField(_l("Topic"), choices=_choices(TOPICS), validate_choice=False)
    text = TextAreaField(_l("What happened"), validators=[Length(max=4000)])
    request_id = HiddenField(validators=[DataRequired(), Length(min=8, max=64)])


class MessageForm(FlaskForm):
    """A message in an open request; ``message_id`` is made when the page is drawn."""

    text = TextAreaField(_l("Add a message"), validators=[Length(max=4000)])
    message_id = HiddenField(validators=[DataRequired(), Length(min=8, max=64)])


def _actor() -> str:
    return f"cabinet:{current_user.login}"


def _may_edit() -> bool:
    return current_user.may("contacts")


# -- forgotten password ----------------------------------------------------------

@blueprint.route("/forgot", methods=["GET", "POST"])
def forgot():
    form = ForgotForm()
    if not current_app.config["ABONENT_PUBLIC_URL"]:
        # Without cabinet.public_url the only base for the link would be the
        # request's Host header, which the sender chooses: a link to their
        # own site would go to the victim. Nothing is stored or sent.
        status = 503 if request.method == "POST" else 200
        return render_template("forgot.html", form=form, unavailable=True), status
    if request.method == "POST":
        if not form.validate_on_submit():
            return render_template("forgot.html", form=form), 400
        session = db()
        settings = current_app.extensions["abonent"].settings
        minutes = settings.get("cabinet", "reset_token_minutes")
        mail = selfservice.request_reset(session, form.identifier.data, utcnow(),
                                         minutes=minutes, actor="cabinet:password-reset")
        session.commit()
        if mail is not None:
            _send_reset_mail(mail, minutes)
        # The same answer whether or not the login exists or has an e-mail.
        return redirect(url_for("selfservice.forgot_sent"))
    return render_template("forgot.html", form=form)


@blueprint.route("/forgot/sent")
def forgot_sent():
    minutes = current_app.extensions["abonent"].settings.get("cabinet", "reset_token_minutes")
    return render_template("forgot_sent.html", minutes=minutes)


def _reset_link(token: str) -> str:
    # Never request.host_url: the Host header is the sender's to choose.
    return current_app.config["ABONENT_PUBLIC_URL"] + url_for("selfservice.reset", token=token)


def _send_reset_mail(mail: selfservice.ResetMail, minutes: int) -> None:
    """Compose in the page's language; send from a background thread."""
    subject = _("Password reset for the subscriber cabinet")
    body = "\n\n".join([
        _("Someone, perhaps you, asked to reset the password of login %(login)s "
          "(account %(number)s).", login=mail.login, number=mail.account_number),
        _("To set a new password, open this link within %(minutes)s minutes:",
          minutes=minutes),
        _reset_link(mail.token),
        _("The link works once. If you did not ask for it, ignore this mail: "
          "your password stays as it is."),
    ]) + "\n"
    smtp = current_app.extensions["abonent"].settings.section("smtp")
    channel = EmailChannel(smtp["host"], smtp["port"], smtp["sender"])
    threading.Thread(target=_deliver, args=(channel, mail.recipient, subject, body,
                                            mail.user_id),
                     name="cabinet-reset-mail", daemon=True).start()


def _deliver(channel: EmailChannel, recipient: str, subject: str, body: str,
             user_id: int) -> None:
    try:
        channel.send(recipient, subject, body)
    except (OSError, smtplib.SMTPException) as error:
        log.warning("cabinet.reset_mail_failed user_id=%s error=%s", user_id,
                    type(error).__name__)
    else:
        log.info("cabinet.reset_mail_sent user_id=%s", user_id)


@blueprint.route("/reset", methods=["GET", "POST"])
def reset():
    session = db()
    if request.method == "GET":
        token = request.args.get("token", "")
        try:
            login = selfservice.reset_login(session, token, utcnow())
        except DomainError as error:
            return _refused(error)
        return render_template("reset.html", form=ResetForm(token=token), login=login)
    form = ResetForm()
    if not form.validate_on_submit():
        if form.csrf_token.errors or form.token.errors:
            return render_template("reset_refused.html",
                                   error=_("The form has expired. Please reload the page "
                                           "and try again.")), 400
        return render_template("reset.html", form=form, login=None), 400
    try:
        user = selfservice.complete_reset(session, form.token.data, form.new.data, utcnow(),
                                          actor="cabinet:password-reset")
    except selfservice.ResetLinkError as error:
        session.rollback()
        return _refused(error)
    except DomainError as error:
        session.rollback()
        return render_template("reset.html", form=form, login=None,
                               error=labels.error_text(error)), 400
    session.commit()
    log.info("cabinet.password_reset account_id=%s user_id=%s", user.account_id, user.id)
    # Whoever was logged in in this browser is logged out like everyone else.
    log_out_keeping_language()
    flash(_("Your password has been changed. Log in with the new one."), "ok")
    return redirect(url_for("auth.login"))


def _refused(error: Exception):
    return render_template("reset_refused.html", error=labels.error_text(error)), 400


# -- notification settings -------------------------------------------------------

@blueprint.route("/notifications", methods=["GET", "POST"])
@login_required
def notifications():
    session = db()
    current = selfservice.notification_settings(session, current_user.account_id)
    may_edit = _may_edit()
    context = dict(current=current, may_edit=may_edit, channels=CHANNELS)
    if request.method == "POST":
        if not may_edit:
            abort(403)
        form = NotificationsForm()
        if not form.validate_on_submit():
            return render_template("notifications.html", form=form, **context), 400
        try:
            changed = selfservice.update_notification_settings(
                session, current_user.account_id, channels=form.channels.data,
                low_balance_threshold=form.low_balance_threshold.data,
                telegram_chat_id=form.telegram_chat_id.data, actor=_actor())
        except DomainError as error:
            session.rollback()
            return render_template("notifications.html", form=form,
                                   error=labels.error_text(error), **context), 400
        session.commit()
        flash(_("Notification settings saved.") if changed else _("Nothing changed."), "ok")
        return redirect(url_for("selfservice.notifications"))
    form = NotificationsForm(data={"channels": list(current.channels),
                                   "low_balance_threshold": current.low_balance_threshold,
                                   "telegram_chat_id": current.telegram_chat_id})
    return render_template("notifications.html", form=form, **context)


# -- which notices where, and the Telegram link (issue 16) --------------------------

KIND_LABELS = {
    "low-balance": _l("Low balance"), "runs-out": _l("Money runs out soon"),
    "payment": _l("Payment received"), "suspended": _l("Service suspended"),
    "restored": _l("Service restored"), "tariff-change": _l("Tariff change"),
    "request-answered": _l("Answer to a request"),
    "broadcast": _l("Messages from the provider"),
}
NOTICE_LANGUAGES = {"": _l("As the provider sets"), "ru": "Русский",
                    "en": "English"}
DOMAIN_MESSAGES_16 = (
    _l("a notice must be one of the kinds on the page"),
    _l("the language of notices must be Russian or English"),
)


class NoticeChannelsForm(FlaskForm):
    # The pairs are checkboxes named "on" drawn by the template; the
    # choices are checked by rating.selfservice, with its sentence.
    on = CheckboxesField(choices=[], validate_choice=False)
    language = SelectField(_l("Language of notices"), choices=_choices(NOTICE_LANGUAGES),
                           validate_choice=False)


class TelegramCodeForm(FlaskForm):
    pass


@blueprint.route("/notifications/channels", methods=["GET", "POST"])
@login_required
def notify_channels():
    session = db()
    matrix = selfservice.notice_matrix(session, current_user.account_id)
    may_edit = _may_edit()
    context = dict(matrix=matrix, may_edit=may_edit, channels=CHANNELS, kinds=KIND_LABELS)
    if request.method == "POST":
        if not may_edit:
            abort(403)
        form = NoticeChannelsForm()
        if not form.validate_on_submit():
            return render_template("notify_channels.html", form=form, **context), 400
        try:
            changed = selfservice.update_notice_matrix(
                session, current_user.account_id, on=form.on.data,
                language=form.language.data, actor=_actor())
        except DomainError as error:
            session.rollback()
            return render_template("notify_channels.html", form=form,
                                   error=labels.error_text(error), **context), 400
        session.commit()
        flash(_("Notification settings saved.") if changed else _("Nothing changed."), "ok")
        return redirect(url_for("selfservice.notify_channels"))
    form = NoticeChannelsForm(data={"on": sorted(matrix.on), "language": matrix.language or ""})
    return render_template("notify_channels.html", form=form, **context)


@blueprint.route("/notifications/telegram", methods=["GET", "POST"])
@login_required
def telegram_link_page():
    from rating import telegram_link
    settings = current_app.extensions["abonent"].settings.section("telegram")
    session = db()
    may_edit = _may_edit()
    form = TelegramCodeForm()
    if request.method == "POST":
        if not may_edit:
            abort(403)
        if not form.validate_on_submit():
            abort(400)
        telegram_link.new_code(session, current_user.account_id,
                               minutes=settings["link_minutes"])
        session.commit()
        return redirect(url_for("selfservice.telegram_link_page"))
    code = telegram_link.current_code(session, current_user.account_id)
    current = selfservice.notification_settings(session, current_user.account_id)
    bot = settings["bot_username"] if settings["enabled"] else ""
    link = telegram_link.deep_link(bot, code.code) if (code and bot) else None
    return render_template("notify_telegram.html", form=form, code=code, link=link, bot=bot,
                           chat_id=current.telegram_chat_id, may_edit=may_edit)


# -- service requests ------------------------------------------------------------

def _requests_page(form, status=200, error=None):
    rows = service_requests.for_account(db(), current_user.account_id)
    return render_template("requests.html", form=form, rows=rows, may_edit=_may_edit(),
                           topics=TOPICS, statuses=STATUSES, error=error,
                           threads=service_requests.threads(db(), [r.id for r in rows]),
                           open_statuses=service_requests.OPEN_STATUSES,
                           # Made when the page is drawn: a form sent twice adds one message.
                           message_ids={r.id: uuid.uuid4().hex for r in rows}), status


@blueprint.route("/requests", methods=["GET", "POST"])
@login_required
def requests_page():
    if request.method == "POST":
        if not _may_edit():
            abort(403)
        form = RequestForm()
        if not form.validate_on_submit():
            return _requests_page(form, 400)
        session = db()
        try:
            row, created = service_requests.create(
                session, current_user.account_id, topic=form.topic.data,
                text=form.text.data, request_id=form.request_id.data, actor=_actor())
        except DomainError as error:
            session.rollback()
            return _requests_page(form, 400, labels.error_text(error))
        session.commit()
        if created:
            flash(_("Request No. %(id)s is registered. The answer will appear here.",
                    id=row.id), "ok")
        return redirect(url_for("selfservice.requests_page"))
    return _requests_page(RequestForm(request_id=uuid.uuid4().hex))


@blueprint.route("/requests/<int:request_id>/messages", methods=["POST"])
@login_required
def request_message(request_id: int):
    """The subscriber's message in their own open request."""
    if not _may_edit():
        abort(403)
    form = MessageForm()
    if not form.validate_on_submit():
        error = (_("The form has expired. Please reload the page and try again.")
                 if form.csrf_token.errors or form.message_id.errors
                 else labels.error_text(DomainError("a message must be 1 to 2000 characters "
                                                    "long")))
        return _requests_page(RequestForm(request_id=uuid.uuid4().hex), 400, error)
    session = db()
    try:
        _message, created = service_requests.add_message(
            session, current_user.account_id, request_id, form.text.data,
            message_id=form.message_id.data, actor=_actor())
    except service_requests.NotFound:
        session.rollback()
        abort(404)
    except DomainError as error:
        session.rollback()
        return _requests_page(RequestForm(request_id=uuid.uuid4().hex), 400,
                              labels.error_text(error))
    session.commit()
    if created:
        flash(_("Your message is added to request No. %(id)s.", id=request_id), "ok")
    return redirect(url_for("selfservice.requests_page") + f"#request-{request_id}")


@blueprint.route("/api/v1/accounts/<int:account_id>/requests")
@login_required
@own_account
def api_requests(account_id: int):
    rows = service_requests.for_account(db(), account_id)
    threads = service_requests.threads(db(), [r.id for r in rows])
    return jsonify([{
        "id": r.id, "topic": r.topic, "status": r.status, "text": r.body,
        "answer": r.answer, "created_at": r.created_at.isoformat() + "Z",
        "updated_at": r.updated_at.isoformat() + "Z",
        # The operator's login stays with the operator.
        "messages": [{"by": m.author_kind, "text": m.body, "status": m.status,
                      "created_at": m.created_at.isoformat() + "Z"} for m in threads[r.id]],
    } for r in rows])


# -- wiring ----------------------------------------------------------------------

def _client_and_identifier() -> str:
    identifier = (request.form.get("identifier") or "").strip().lower()[:64]
    return f"{get_remote_address()}|{identifier}"


class _MaskTokens(logging.Filter):
    """The access log shows /reset?token=***: a token in a log is a password."""

    pattern = re.compile(r"(token=)[^\s&\"]+")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "token=" in message:
            record.msg, record.args = self.pattern.sub(r"\1***", message), ()
        return True


def install(app: Flask, limiter: Limiter, csrf: CSRFProtect) -> None:
    """Register the pages, their rate limits and the log mask."""
    app.register_blueprint(blueprint)
    app.jinja_env.filters.update(request_topic=lambda code: str(TOPICS.get(code, code)),
                                 request_status=lambda code: str(STATUSES.get(code, code)),
                                 channel=lambda code: str(CHANNELS.get(code, code)))
    # Every POST counts (the answer is always the same, so there is no
    # "failure" to count): per address and login, and per address alone.
    view = app.view_functions["selfservice.forgot"]
    view = limiter.limit(FORGOT_LIMITS, key_func=_client_and_identifier, methods=["POST"])(view)
    view = limiter.limit(FORGOT_ADDRESS_LIMITS, methods=["POST"])(view)
    app.view_functions["selfservice.forgot"] = view
    csrf.exempt(view)  # the limit first; ForgotForm checks the CSRF token itself
    view = app.view_functions["selfservice.reset"]
    view = limiter.limit(RESET_ADDRESS_LIMITS, methods=["POST"])(view)
    app.view_functions["selfservice.reset"] = view
    csrf.exempt(view)  # ResetForm checks the CSRF token itself
    # werkzeug's server, and gunicorn's access log should someone turn it on.
    for name in ("werkzeug", "gunicorn.access"):
        access_log = logging.getLogger(name)
        if not any(isinstance(f, _MaskTokens) for f in access_log.filters):
            access_log.addFilter(_MaskTokens())
