"""The subscriber's pages. Every view is for the logged-in account only.

Reads go through cabinet.queries and rating.cabinet_ops; every change goes
through rating.cabinet_ops (which writes the operation log) and is a POST
with a CSRF token. No GET changes anything.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from functools import wraps

from flask import (Blueprint, Response, abort, current_app, flash, g, redirect,
                   render_template, request, url_for)
from flask_babel import gettext as _
from flask_login import current_user, login_required, login_user
from sqlalchemy import select

from cabinet import labels, ledger_text, overview, periods, queries, spreadsheet, traffic_page
from cabinet.app import db, ladder, reads
from cabinet.forms import ContactsForm, EndSessionsForm, PasswordForm, PromisedForm, TurboForm
from cabinet.formatting import csv_number, locale_key, money, when
from config.db import utcnow
from rating import cabinet_ops, options, promised
from rating.accounts import DomainError
from rating.models import Account, OptionType, PromisedPayment

log = logging.getLogger(__name__)

blueprint = Blueprint("main", __name__)

TURBO_CODE = "turbo"


def _timezone() -> str:
    return current_app.config["BABEL_DEFAULT_TIMEZONE"]


def _actor() -> str:
    return f"cabinet:{current_user.login}"


def _account():
    view = queries.account_view(db(), current_user.account_id)
    if view is None:
        abort(404)
    return view


def _bad_request(template: str, error: Exception, **context):
    return render_template(template, error=labels.error_text(error), **context), 400


def own_account(view):
    """For URLs that name an account: another account's id answers 404, not
    403, so ids cannot be probed."""
    @wraps(view)
    def wrapper(account_id: int, **kwargs):
        if account_id != current_user.account_id:
            abort(404)
        return view(account_id=account_id, **kwargs)
    return wrapper


@dataclass(frozen=True)
class TurboOffer:
    rate_multiplier: int
    duration_hours: int
    price: Decimal


# The offer is a catalogue row that changes seldom: the dashboard (the
# busiest page) reads it from the process's memory, fresh for this long.
# Buying charges the stored price, whatever a page showed.
OFFER_TTL_SECONDS = 30.0


def _turbo_on_sale() -> TurboOffer | None:
    cache = current_app.extensions.setdefault("abonent_turbo_offer", {})
    now = time.monotonic()
    if cache.get("until", 0.0) > now:
        return cache["offer"]
    row = db().scalar(select(OptionType).where(OptionType.code == TURBO_CODE))
    if row is None:
        return None  # not cached: an offer put on sale shows at once
    offer = TurboOffer(row.rate_multiplier, row.duration_hours, row.price)
    cache.update(offer=offer, until=now + OFFER_TTL_SECONDS)
    return offer


def _turbo_offer(speed):
    """The turbo on sale, unless one is on or the role may not buy."""
    if speed is None or speed.profile != "normal" or not current_user.may("service"):
        return None
    return _turbo_on_sale()


@blueprint.route("/")
@login_required
def dashboard():
    from cabinet import plans
    session = reads()
    # The login's SELECT has read the account (auth.load_user); a GET
    # changes nothing, so it is still the account as of this request.
    account = g.get("login_account") or _account()
    now = utcnow()
    active = queries.active_options(session, account.id, now)
    tariff = account.tariff
    speed = None if tariff is None else cabinet_ops.speed_with_options(
        account.profile, tariff.rate_down_kbps, tariff.rate_up_kbps, tariff.negative_rate_kbps,
        active, now, state=account.state, ladder=ladder(),
        windows=tariff.windows, timezone=_timezone(),
        limit_throttled_until=account.limit_throttled_until)
    turbo = _turbo_offer(speed)
    facts = overview.build(db(), session, account, ladder=ladder(),
                           today=periods.local_today(_timezone()), now=now,
                           settings=current_app.extensions["abonent"].settings,
                           may_pay=current_user.may("money"))
    return render_template("dashboard.html", account=account, speed=speed, overview=facts,
                           profile=labels.PROFILES.get(speed.profile if speed else "")
                           or labels.PROFILES.get(account.profile),
                           plan=plans.overview(account, active, now),
                           sessions=queries.recent_sessions(session, account.id),
                           # TurboForm's fields, drawn by the template without
                           # building the form (it validates the POST).
                           turbo=turbo, turbo_request_id=uuid.uuid4().hex if turbo else None)


@blueprint.route("/turbo", methods=["POST"])
@login_required
def buy_turbo():
    if not current_user.may("service"):
        abort(403)
    form = TurboForm()
    if not form.validate_on_submit():
        abort(400)
    session = db()
    try:
        purchase = options.buy(session, session.get(Account, current_user.account_id),
                               TURBO_CODE, utcnow(), request_id=form.request_id.data,
                               actor=_actor())
    except DomainError as error:
        session.rollback()
        flash(labels.error_text(error), "error")
        return redirect(url_for("main.dashboard"))
    session.commit()
    flash(_("Turbo is on until %(until)s.", until=when(purchase.ends_at)), "ok")
    return redirect(url_for("main.dashboard"))


@blueprint.route("/contacts", methods=["GET", "POST"])
@login_required
def contacts():
    account = _account()
    may_edit = current_user.may("contacts")
    form = ContactsForm(data={"email": account.email, "phone": account.phone,
                              "phone_landline": account.phone_landline})
    if request.method == "POST":
        if not may_edit:
            abort(403)
        if not form.validate_on_submit():
            return render_template("contacts.html", form=form, may_edit=may_edit), 400
        session = db()
        try:
            changed = cabinet_ops.update_contacts(
                session, account.id, email=form.email.data, phone=form.phone.data,
                phone_landline=form.phone_landline.data, actor=_actor())
        except DomainError as error:
            session.rollback()
            return _bad_request("contacts.html", error, form=form, may_edit=may_edit)
        session.commit()
        flash(_("Contacts saved.") if changed else _("Nothing changed."), "ok")
        return redirect(url_for("main.contacts"))
    return render_template("contacts.html", form=form, may_edit=may_edit)


@blueprint.route("/password", methods=["GET", "POST"])
@login_required
def password():
    form = PasswordForm()
    end_form = EndSessionsForm()
    if request.method == "POST":
        if not form.validate_on_submit():
            return render_template("password.html", form=form, end_form=end_form), 400
        session = db()
        try:
            epoch = cabinet_ops.change_password(session, current_user.user_id,
                                                current=form.current.data, new=form.new.data,
                                                actor=_actor())
        except DomainError as error:
            session.rollback()
            # Counted per login (cabinet.tokens.apply_limits): a stolen
            # session must not guess the password here.
            g.password_refused = isinstance(error, cabinet_ops.WrongPassword)
            return _bad_request("password.html", error, form=form, end_form=end_form)
        session.commit()
        _stay_logged_in(epoch)
        log.info("cabinet.password_changed account_id=%s user_id=%s",
                 current_user.account_id, current_user.user_id)
        flash(_("Password changed. Every other session has been logged out and every "
                "API token revoked."), "ok")
        return redirect(url_for("main.password"))
    return render_template("password.html", form=form, end_form=end_form)


@blueprint.route("/sessions/end-all", methods=["POST"])
@login_required
def end_other_sessions():
    form = EndSessionsForm()
    if not form.validate_on_submit():
        abort(400)
    session = db()
    epoch = cabinet_ops.end_other_sessions(session, current_user.user_id, actor=_actor())
    session.commit()
    _stay_logged_in(epoch)
    flash(_("Every other session has been logged out and every API token revoked."), "ok")
    return redirect(url_for("main.password"))


def _stay_logged_in(epoch: int) -> None:
    from cabinet.auth import Principal
    principal = current_user._get_current_object()
    login_user(Principal(principal.user_id, principal.account_id, principal.login,
                         principal.role, epoch, principal.own_account_id, principal.rights))


def _promised_context(form):
    session = db()
    account = session.get(Account, current_user.account_id)
    rules = promised.PromisedRules.from_settings(current_app.extensions["abonent"].settings)
    reason = None
    try:
        # A read-only check, so the page can say beforehand why not.
        promised.check(session, account, rules.max_amount, utcnow(), rules)
    except DomainError as error:
        reason = labels.error_text(error)
    recent = session.scalars(select(PromisedPayment)
                             .where(PromisedPayment.account_id == account.id)
                             .order_by(PromisedPayment.granted_at.desc()).limit(5)).all()
    return dict(form=form, rules=rules, reason=reason, recent=recent, balance=account.balance,
                may_take=current_user.may("money"))


@blueprint.route("/promised", methods=["GET", "POST"])
@login_required
def promised_payment():
    form = PromisedForm()
    if request.method == "POST":
        if not current_user.may("money"):
            abort(403)
        if not form.validate_on_submit():
            return render_template("promised.html", **_promised_context(form)), 400
        session = db()
        rules = promised.PromisedRules.from_settings(current_app.extensions["abonent"].settings)
        try:
            account = session.get(Account, current_user.account_id)
            grant = promised.grant(session, account, form.amount.data, utcnow(), rules,
                                   actor=_actor())
        except DomainError as error:
            session.rollback()
            return _bad_request("promised.html", error, **_promised_context(form))
        session.commit()
        flash(_("A promised payment of %(amount)s is credited until %(due)s.",
                amount=money(grant.amount), due=when(grant.due_at)), "ok")
        # Taken from the overview's offer: back there, to see the service return.
        if request.form.get("back") == "overview":
            return redirect(url_for("main.dashboard"))
        return redirect(url_for("main.promised_payment"))
    return render_template("promised.html", **_promised_context(form))


@blueprint.route("/history")
@login_required
def history():
    return render_template("history.html",
                           operations=queries.operations(db(), current_user.account_id))


@blueprint.route("/sessions")
@login_required
def sessions():
    today = periods.local_today(_timezone())
    try:
        period = traffic_page.past_month(request.args.get("month"), today)
    except periods.PeriodError as error:
        return _bad_request("sessions.html", error, period=None, rows=[])
    rows = queries.sessions_between(db(), current_user.account_id, period.start_utc,
                                    period.end_utc)
    costs = traffic_page.session_costs(current_user.account_id, rows, utcnow())
    return render_template("sessions.html", period=period, rows=rows, costs=costs,
                           nav=traffic_page.month_nav(period, today),
                           total_cost=None if costs is None else sum(costs, Decimal(0)),
                           total_down=sum(r.octets_down for r in rows),
                           total_up=sum(r.octets_up for r in rows))


def _statement_period():
    today = periods.local_today(_timezone())
    first = periods.parse_day(request.args.get("from"), today.replace(day=1))
    last = periods.parse_day(request.args.get("to"), today)
    return periods.days(first, last, _timezone())


@blueprint.route("/payments")
@login_required
def payments():
    account = _account()
    try:
        period = _statement_period()
        statement = cabinet_ops.statement(db(), account.id, period.start_utc, period.end_utc)
    except (periods.PeriodError, DomainError) as error:
        return _bad_request("payments.html", error, account=account, period=None,
                            statement=None, incoming=[])
    return render_template("payments.html", account=account, period=period,
                           statement=statement,
                           incoming=cabinet_ops.payments(db(), account.id, limit=20))


@blueprint.route("/payments.csv")
@login_required
def payments_csv():
    account = _account()
    try:
        period = _statement_period()
        statement = cabinet_ops.statement(db(), account.id, period.start_utc, period.end_utc)
    except (periods.PeriodError, DomainError) as error:
        return Response(labels.error_text(error) + "\n", status=400, mimetype="text/plain")
    number = csv_number
    rows = [["", _("Opening balance"), "", number(statement.opening), ""]]
    rows += [[when(line.created_at, "yyyy-MM-dd HH:mm"), labels.kind(line.kind),
              number(line.amount), number(line.balance_after),
              ledger_text.describe(line.kind, line.key, line.memo_code, line.memo_args)]
             for line in statement.lines]
    rows.append(["", _("Closing balance"), "", number(statement.closing), ""])
    # Operation and comment are text (a comment may quote an operator's
    # reason or a package's name): quoted and never a formula. A Russian
    # spreadsheet splits a .csv at ";" and reads "1069,35" as a number.
    body = spreadsheet.csv_text([_("Date"), _("Operation"), _("Amount"), _("Balance after"),
                                 _("Comment")], rows, text_columns={1, 4},
                                delimiter=spreadsheet.delimiter(locale_key()))
    name = (f"statement-{account.number}-{period.first_day.isoformat()}-"
            f"{period.last_day.isoformat()}.csv")
    return Response(body, mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@blueprint.route("/traffic")
@login_required
def traffic():
    return traffic_page.month_page()


@blueprint.app_template_global("traffic_today")
def traffic_today():
    """For the overview's traffic block (_traffic_summary.html)."""
    return traffic_page.today_summary()


@blueprint.route("/traffic/day")
@login_required
def traffic_day():
    return traffic_page.day_page()
