"""The subscriber's plan: tariff change in three steps, voluntary freeze,
options (turbo, traffic packs).

Every figure on these pages (fees, start days, limits, whether the money
suffices) comes from rating (tariff_change, freeze, options); the cabinet
only shows it. A change is a POST with the CSRF token and the id of the
account the page was drawn for: a foreign id answers 404 (a form left open
in a tab after logging in as someone else must not act on the new login),
and only an owner may send one (rating.roles: an accountant and a viewer look).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass
from decimal import Decimal

from flask import (Blueprint, abort, current_app, flash, redirect, render_template, request,
                   url_for)
from flask_babel import format_date, gettext as _, ngettext
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import DateField, HiddenField
from wtforms.validators import DataRequired, InputRequired, Length

from cabinet import labels, periods, queries
from cabinet.app import db
from cabinet.formatting import when as _when
from config.db import utcnow
from rating import freeze, options, tariff_change, timewindows
from rating.accounts import DomainError
from rating.models import Account

log = logging.getLogger(__name__)

blueprint = Blueprint("plans", __name__)

WHENS = ("now", "next_period")
DAY_FORMAT = "d MMMM y"  # 24 ноября 2026, 24 November 2026

# rating's sentences on these pages, marked for the catalogue (labels.error_text
# translates any sentence the catalogue holds).
DOMAIN_MESSAGES = (
    _l("this tariff is not offered to the account"),
    _l("this is the current tariff"),
    _l("a change starts now or from the next period"),
    _l("there is no tariff change to cancel"),
    _l("the tariff change has already started"),
    _l("only an active account can be frozen"),
    _l("the account is not frozen"),
    _l("this option is not on sale"),
)
TERMS_CHANGED = _l("the terms have changed since the page was drawn; please check them again")
FORM_DAMAGED = _l("the form is incomplete; please start again")


# -- forms -------------------------------------------------------------------

class AccountForm(FlaskForm):
    """The CSRF token and the account the page was drawn for."""

    account_id = HiddenField(validators=[DataRequired(), Length(max=20)])


class TariffChangeForm(AccountForm):
    tariff = HiddenField(validators=[DataRequired(), Length(max=20)])
    when = HiddenField(validators=[DataRequired(), Length(max=16)])
    # The start day the subscriber was shown: if it moved on (midnight
    # passed), they confirm again rather than get a day they did not see.
    starts_on = HiddenField(validators=[DataRequired(), Length(max=10)])


class FreezeForm(AccountForm):
    until = DateField(_l("Freeze until"), validators=[InputRequired()])


class OptionForm(AccountForm):
    """``request_id`` is made when the page is drawn, so a form sent twice
    (a double tap, a retry) buys once."""

    code = HiddenField(validators=[DataRequired(), Length(max=32)])
    request_id = HiddenField(validators=[DataRequired(), Length(min=8, max=64)])


# -- helpers -------------------------------------------------------------------

def _actor() -> str:
    return f"cabinet:{current_user.login}"


def _today() -> dt.date:
    return periods.local_today(current_app.config["BABEL_DEFAULT_TIMEZONE"])


def _account(lock: bool = False) -> Account:
    """The logged-in account; ``lock`` for a change: the row is held until the
    commit, so a form sent twice at once is decided one after the other, and
    it is read afresh (the request may have loaded it before the lock)."""
    account = db().get(Account, current_user.account_id,
                       with_for_update={"of": Account} if lock else None,
                       populate_existing=lock)
    if account is None:
        abort(404)
    return account


def _may_change() -> bool:
    """The tariff, a freeze and options change the service: the owner's
    (rating.roles)."""
    return current_user.may("service")


def _form(form_class, **data):
    return form_class(formdata=None, account_id=str(current_user.account_id), **data)


def _posted(form: AccountForm) -> bool:
    """Role, then account, then the form itself (CSRFProtect has already
    refused a POST without a valid token)."""
    if not _may_change():
        abort(403)
    sent = (form.account_id.data or "").strip()
    if sent and sent != str(current_user.account_id):
        abort(404)
    return form.validate_on_submit()


def _error(error) -> str:
    return labels.error_text(error)


def long_date(day: dt.date | dt.datetime | None) -> str:
    """A day in words; a (naive UTC) moment is shown as its local day."""
    if day is None:
        return "—"
    if isinstance(day, dt.datetime):
        day = day.replace(tzinfo=dt.timezone.utc)
    # Not "long": Russian's ends in "г.", which a sentence's full stop doubles.
    return format_date(day, DAY_FORMAT)


def time_left(ends_at: dt.datetime, now: dt.datetime) -> str:
    """"2 h 15 min left" in the page's language, with its plural forms.

    Days and hours when a day or more is left, else hours and minutes.
    """
    minutes = int((ends_at - now).total_seconds() // 60)
    if minutes < 1:
        return _("less than a minute left")
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    parts = []
    if days:
        parts.append(ngettext("%(num)d day", "%(num)d days", days))
    if hours:
        parts.append(ngettext("%(num)d h", "%(num)d h", hours))
    if minutes and not days:
        parts.append(ngettext("%(num)d min", "%(num)d min", minutes))
    return _("%(time)s left", time=" ".join(parts))


def option_duration(hours: int) -> str:
    """An option's life: hours up to two days, whole days beyond."""
    if hours > 48 and hours % 24 == 0:
        return ngettext("%(num)d day", "%(num)d days", hours // 24)
    return ngettext("%(num)d h", "%(num)d h", hours)


blueprint.add_app_template_filter(long_date, "long_date")
blueprint.add_app_template_filter(option_duration, "option_duration")


# -- the overview's part ---------------------------------------------------------

@dataclass(frozen=True)
class ActiveOption:
    name: str
    kind: str
    ends_at: dt.datetime
    left: str


@dataclass(frozen=True)
class Overview:
    pending: tariff_change.Pending | None
    frozen_until: dt.date | None
    options: list[ActiveOption]
    may_change: bool
    form: AccountForm | None


def _running(active, now: dt.datetime) -> list[ActiveOption]:
    return [ActiveOption(o.name, o.kind, o.ends_at, time_left(o.ends_at, now)) for o in active]


def _active(session, account_id: int, now: dt.datetime) -> list[ActiveOption]:
    return _running(queries.active_options(session, account_id, now), now)


def overview(account, active, now: dt.datetime) -> Overview:
    """What the dashboard shows of the plan: an ordered tariff change, a
    freeze, running options; from the account and its active options as
    cabinet.queries reads them (account_view, active_options)."""
    pending = (None if account.next_tariff is None else
               tariff_change.Pending(tariff=account.next_tariff,
                                     starts_on=account.next_tariff_from))
    may_change = _may_change()
    return Overview(pending=pending,
                    frozen_until=account.frozen_until if account.state == "frozen" else None,
                    options=_running(active, now),
                    may_change=may_change,
                    # Only the cancel button draws it.
                    form=_form(AccountForm) if pending is not None and may_change else None)


# -- tariff change: 1. choose, 2. cost and start, 3. confirm -------------------------

@dataclass(frozen=True)
class Offer:
    id: int
    name: str
    fee: Decimal
    fee_period: str
    rate_down_kbps: int
    rate_up_kbps: int
    prepaid_mb: int
    price_per_gb: Decimal
    blocked_until: dt.datetime | None  # the frequency limit, while it holds
    windows: tuple = ()  # time-of-day windows with their price or speed (local time)


def _offer(tariff, account, now) -> Offer:
    limit = tariff_change.allowed_from(account, tariff)
    return Offer(tariff.id, tariff.name, tariff.fee, tariff.fee_period, tariff.rate_down_kbps,
                 tariff.rate_up_kbps, tariff.prepaid_mb, tariff.price_per_gb,
                 limit if limit is not None and now < limit else None,
                 timewindows.from_rules(tariff.rules))


def _tariffs_page(error=None, status=200):
    session = db()
    account = _account()
    now = utcnow()
    offers = [_offer(t, account, now) for t in tariff_change.offers(session, account)]
    current = None if account.tariff is None else _offer(account.tariff, account, now)
    return render_template("plans/tariffs.html", current=current, offers=offers,
                           pending=tariff_change.pending(session, account),
                           may_change=_may_change(), cancel_form=_form(AccountForm),
                           error=error), status


@blueprint.route("/tariff")
@login_required
def tariffs():
    return _tariffs_page()


@blueprint.route("/tariff/terms")
@login_required
def tariff_terms():
    tariff_id = request.args.get("tariff")
    session = db()
    account = _account()
    try:
        tariff = tariff_change.offer(session, account, tariff_id)
    except DomainError as error:
        return _tariffs_page(_error(error), 404)
    today, now = _today(), utcnow()
    previews = [tariff_change.preview(session, account, tariff.name, when, today)
                for when in WHENS]
    reason = None
    try:
        tariff_change.check_limit(account, tariff, now)
    except DomainError as error:
        reason = _error(error)
    chosen = request.args.get("when")
    return render_template("plans/tariff_terms.html", offer=_offer(tariff, account, now),
                           previews=previews, reason=reason,
                           chosen=chosen if chosen in WHENS else WHENS[0])


@blueprint.route("/tariff/confirm")
@login_required
def tariff_confirm():
    tariff_id, when = request.args.get("tariff"), request.args.get("when")
    if not when:
        # The language switch comes back without the query: start step 2 again.
        return redirect(url_for("plans.tariff_terms", tariff=tariff_id))
    session = db()
    account = _account()
    today, now = _today(), utcnow()
    try:
        tariff = tariff_change.offer(session, account, tariff_id)
        plan = tariff_change.preview(session, account, tariff.name, when, today)
    except DomainError as error:
        return _tariffs_page(_error(error), 404)
    reason = None
    try:
        tariff_change.check_limit(account, tariff, now)
    except DomainError as error:
        reason = _error(error)
    form = _form(TariffChangeForm, tariff=str(tariff.id), when=when,
                 starts_on=plan.starts_on.isoformat())
    return render_template("plans/tariff_confirm.html", offer=_offer(tariff, account, now),
                           plan=plan, reason=reason, form=form, may_change=_may_change(),
                           again=tariff_change.switch_again_from(session, now),
                           current=account.tariff,
                           pending=tariff_change.pending(session, account))


@blueprint.route("/tariff/change", methods=["POST"])
@login_required
def tariff_change_post():
    form = TariffChangeForm()
    if not _posted(form):
        return _tariffs_page(_error(DomainError(FORM_DAMAGED)), 400)
    session = db()
    account = _account(lock=True)
    today, now = _today(), utcnow()
    try:
        tariff = tariff_change.offer(session, account, form.tariff.data)
        shown = tariff_change.preview(session, account, tariff.name, form.when.data, today)
        if shown.starts_on.isoformat() != form.starts_on.data:
            raise DomainError(TERMS_CHANGED)
        plan = tariff_change.change(session, account, tariff.name, form.when.data, now, today,
                                    actor=_actor())
    except DomainError as error:
        session.rollback()
        return _tariffs_page(_error(error), 400)
    session.commit()
    log.info("cabinet.tariff_change account_id=%s tariff=%s starts_on=%s", account.id,
             plan.tariff, plan.starts_on)
    flash(_("The tariff %(name)s is ordered from %(day)s.", name=plan.tariff,
            day=long_date(plan.starts_on)), "ok")
    return redirect(url_for("main.dashboard"))


@blueprint.route("/tariff/cancel", methods=["POST"])
@login_required
def tariff_cancel():
    form = AccountForm()
    if not _posted(form):
        abort(400)
    session = db()
    account = _account(lock=True)
    try:
        plan = tariff_change.cancel(session, account, _today(), actor=_actor())
    except DomainError as error:
        session.rollback()
        return _tariffs_page(_error(error), 400)
    session.commit()
    flash(_("The change to the tariff %(name)s is cancelled.", name=plan.tariff), "ok")
    return redirect(url_for("main.dashboard"))


# -- voluntary freeze ------------------------------------------------------------

def _freeze_page(form, error=None, status=200):
    account = _account()
    rules = freeze.FreezeRules.from_settings(current_app.extensions["abonent"].settings)
    today = _today()
    return render_template("plans/freeze.html", account=account, rules=rules, today=today,
                           first=rules.first_until(today), last=rules.last_until(today),
                           form=form, end_form=_form(AccountForm), may_change=_may_change(),
                           error=error), status


@blueprint.route("/freeze", methods=["GET", "POST"])
@login_required
def freeze_page():
    if request.method == "GET":
        rules = freeze.FreezeRules.from_settings(current_app.extensions["abonent"].settings)
        return _freeze_page(_form(FreezeForm, until=rules.first_until(_today())))
    form = FreezeForm()
    if not _posted(form):
        return _freeze_page(form, status=400)
    session = db()
    account = _account(lock=True)
    rules = freeze.FreezeRules.from_settings(current_app.extensions["abonent"].settings)
    try:
        freeze.freeze(session, account, form.until.data, _today(), min_days=rules.min_days,
                      max_days=rules.max_days, actor=_actor())
    except DomainError as error:
        session.rollback()
        return _freeze_page(form, _error(error), 400)
    session.commit()
    log.info("cabinet.freeze account_id=%s until=%s", account.id, form.until.data)
    flash(_("The account is frozen until %(day)s.", day=long_date(form.until.data)), "ok")
    return redirect(url_for("plans.freeze_page"))


@blueprint.route("/freeze/end", methods=["POST"])
@login_required
def unfreeze():
    form = AccountForm()
    if not _posted(form):
        abort(400)
    session = db()
    account = _account(lock=True)
    try:
        freeze.unfreeze(session, account, actor=_actor())
    except DomainError as error:
        session.rollback()
        return _freeze_page(_form(FreezeForm), _error(error), 400)
    session.commit()
    flash(_("The freeze is over: the account is active again."), "ok")
    return redirect(url_for("plans.freeze_page"))


# -- options ----------------------------------------------------------------------

@dataclass(frozen=True)
class OnSale:
    code: str
    name: str
    kind: str
    price: Decimal
    duration_hours: int
    rate_multiplier: int
    traffic_mb: int


def _on_sale(option) -> OnSale:
    return OnSale(option.code, option.name, option.kind, option.price, option.duration_hours,
                  option.rate_multiplier, option.traffic_mb)


def _options_page(error=None, status=200):
    session = db()
    account = _account()
    return render_template("plans/options.html",
                           catalogue=[_on_sale(o) for o in options.on_sale(session)],
                           active=_active(session, account.id, utcnow()),
                           balance=account.balance, may_change=_may_change(),
                           error=error), status


@blueprint.route("/options")
@login_required
def options_page():
    return _options_page()


def _option_confirm(code: str, form, error=None, status=200):
    session = db()
    account = _account()
    option = next((o for o in options.on_sale(session) if o.code == code), None)
    if option is None:
        return _options_page(_error(DomainError("this option is not on sale")), 404)
    reason = None
    try:
        options.check(session, account, code, utcnow())
    except DomainError as found:
        reason = _error(found)
    return render_template("plans/option_confirm.html", option=_on_sale(option),
                           balance=account.balance, reason=reason, form=form,
                           may_change=_may_change(), error=error), status


@blueprint.route("/options/buy", methods=["GET", "POST"])
@login_required
def option_buy():
    if request.method == "GET":
        code = request.args.get("code", "")
        return _option_confirm(code, _form(OptionForm, code=code,
                                           request_id=uuid.uuid4().hex))
    form = OptionForm()
    if not _posted(form):
        abort(400)
    code = form.code.data
    session = db()
    account = _account(lock=True)
    option = next((o for o in options.on_sale(session) if o.code == code), None)
    try:
        if option is None:
            raise DomainError("this option is not on sale")
        # No read-only check first: the guarded debit decides about the
        # money, and a form sent twice must get the first purchase back.
        purchase = options.buy(session, account, code, utcnow(),
                               request_id=form.request_id.data, actor=_actor())
    except DomainError as error:
        session.rollback()
        return _option_confirm(code, form, _error(error), 400)
    session.commit()
    log.info("cabinet.option_buy account_id=%s code=%s created=%s", account.id, code,
             purchase.created)
    flash(_("%(name)s is bought: it runs until %(until)s.", name=option.name,
            until=_when(purchase.ends_at)), "ok")
    return redirect(url_for("plans.options_page"))

