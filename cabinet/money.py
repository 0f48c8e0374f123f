"""Money in: vouchers, online top-ups through a provider, and the money
documents (statement PDF; a company's invoice and act).

Every change is a POST with a CSRF token, except the provider's callback,
which a bank's server sends: it carries no cookie and no token, so it is
CSRF-exempt and proven by its signature instead. A viewer may download the
documents but not pay or redeem. Figures come from rating/; this module
only checks forms and lays pages out.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ipaddress
import logging
import re
from decimal import Decimal

from flask import (Blueprint, Flask, Response, abort, current_app, flash, has_request_context,
                   jsonify, redirect, render_template, request, url_for)
from flask_babel import format_date
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from flask_wtf.csrf import CSRFProtect
from wtforms import BooleanField, DecimalField, HiddenField, IntegerField, StringField
from wtforms.validators import AnyOf, DataRequired, InputRequired, Length, NumberRange, Optional

from cabinet import labels, pdf, periods
from cabinet.app import db
from cabinet.formatting import money as show_money
from cabinet.formatting import money_with_currency
from rating import autopay, cabinet_ops, documents, payments, vouchers, yookassa
from rating.accounts import DomainError
from rating.models import Account

log = logging.getLogger(__name__)

blueprint = Blueprint("money", __name__)

TESTPAY = "testpay"
DOCUMENT_KINDS = ("invoice", "act")
DOCUMENT_MONTHS = 12


class VoucherForm(FlaskForm):
    code = StringField(_l("Voucher code"), validators=[DataRequired(), Length(max=64)])


class TopupForm(FlaskForm):
    # Decimal, never float; the limits are rating.payments'.
    amount = DecimalField(_l("Amount"), places=2, validators=[InputRequired()])
    # The provider's idempotence key, made when the form is shown: the form
    # sent twice (a double click, a retry) is one payment.
    key = HiddenField(validators=[Optional(), Length(max=64)])


class AutopayForm(FlaskForm):
    enabled = BooleanField(_l("Pay automatically from the saved card"))
    amount = DecimalField(_l("Autopayment amount, RUB"), places=2, validators=[InputRequired()])
    days = IntegerField(_l("When the money lasts fewer days than"),
                        validators=[InputRequired(), NumberRange(1, autopay.MAX_DAYS)])


class BankForm(FlaskForm):
    decision = HiddenField(validators=[AnyOf(("pay", "decline"))])


# -- helpers ------------------------------------------------------------------

# rating's sentences shown here (labels.error_text translates them).
MESSAGES = (_l("the voucher code is wrong"), _l("this voucher has already been used"),
            _l("a closed account cannot be topped up"),
            _l("a top-up must be an amount like 100 or 99.50"),
            _l("a card payment needs an e-mail or a phone in the account's contacts for the "
               "receipt"),
            _l("this payment was already started with another amount or account"),
            _l("an autopayment must be an amount like 500 or 99.50"))
# Shown when the provider cannot be reached (its own words stay in the log).
PROVIDER_DOWN = _l("The payment service does not answer. Please try again in a few minutes.")
_AUTOPAY_RANGE = re.compile(r"^an autopayment must be between (?P<low>[0-9.]+) and "
                            r"(?P<high>[0-9.]+)$")
_RANGE = re.compile(r"^a top-up must be between (?P<low>[0-9.]+) and (?P<high>[0-9.]+)$")


def error_text(error: Exception) -> str:
    if isinstance(error, payments.ProviderUnavailable):
        return str(PROVIDER_DOWN)
    match = _RANGE.match(str(error))
    autopay_match = _AUTOPAY_RANGE.match(str(error))
    if match is not None:
        text = _("a top-up must be between %(low)s and %(high)s",
                 low=show_money(Decimal(match["low"])), high=show_money(Decimal(match["high"])))
    elif autopay_match is not None:
        text = _("an autopayment must be between %(low)s and %(high)s",
                 low=show_money(Decimal(autopay_match["low"])),
                 high=show_money(Decimal(autopay_match["high"])))
    else:
        return labels.error_text(error)
    return text[:1].upper() + text[1:]


def _settings():
    return current_app.extensions["abonent"].settings


def _actor() -> str:
    return f"cabinet:{current_user.login}"


def _may_pay() -> bool:
    return current_user.may("money")


def _account() -> Account:
    account = db().get(Account, current_user.account_id)
    if account is None:
        abort(404)
    return account


def testpay_enabled() -> bool:
    return bool(current_app.config.get("TESTPAY_ENABLED"))


def testpay() -> payments.TestPay:
    """The test provider, or 404 when the operator has not turned it on."""
    if not testpay_enabled():
        abort(404)
    secret = _settings().get("payments", "testpay_secret")
    if not secret:
        # One secret for every worker: derived from the cabinet's key.
        secret = hmac.new(current_app.config["SECRET_KEY"].encode(), b"testpay",
                          hashlib.sha256).hexdigest()
    return payments.TestPay(secret, bank_url=request.script_root + "/testpay")


def card_provider():
    """YooKassa when the operator configured it, else the test bank when it
    is on; None when there is no card payment."""
    provider = current_app.extensions.get("abonent_yookassa")
    if provider is not None:
        return provider
    return testpay() if testpay_enabled() else None


def card_enabled() -> bool:
    return current_app.extensions.get("abonent_yookassa") is not None or testpay_enabled()


def _topup_context(voucher_form=None, topup_form=None, **extra):
    limits = payments.Limits.from_settings(_settings())
    return dict(voucher_form=voucher_form or VoucherForm(),
                topup_form=topup_form or TopupForm(key=payments.new_key()), limits=limits,
                online=card_enabled(), may_pay=_may_pay(),
                balance=_account().balance, **extra)


# -- top up: the page, vouchers, online payment -------------------------------

@blueprint.route("/topup")
@login_required
def topup():
    # The overview's "top up" link names the amount it needs; anything that
    # is not an amount is ignored (the form then starts empty).
    suggested = None
    try:
        suggested = Decimal(request.args.get("amount", ""))
    except ArithmeticError:
        pass
    if suggested is not None and not (suggested.is_finite() and 0 < suggested < 10 ** 9):
        suggested = None
    form = TopupForm(amount=suggested.quantize(Decimal("0.01")) if suggested else None)
    return render_template("topup.html", **_topup_context(topup_form=form))


@blueprint.route("/topup/voucher", methods=["POST"])
@login_required
def redeem_voucher():
    if not _may_pay():
        abort(403)
    form = VoucherForm()
    if not form.validate_on_submit():
        return render_template("topup.html", **_topup_context(voucher_form=form)), 400
    session = db()
    try:
        result = vouchers.redeem(session, _account(), form.code.data, actor=_actor())
    except DomainError as error:
        session.rollback()
        # Only the address and the account: a code is as good as money.
        log.info("cabinet.voucher_refused account_id=%s ip=%s reason=%s",
                 current_user.account_id, request.remote_addr, type(error).__name__)
        return render_template("topup.html", error=error_text(error),
                               **_topup_context(voucher_form=form)), 400
    session.commit()
    if result.created:
        flash(_("The voucher is redeemed: %(amount)s credited.",
                amount=money_with_currency(result.amount)), "ok")
    else:
        flash(_("This voucher was already credited to your account."), "ok")
    return redirect(url_for("main.payments"))


@blueprint.route("/topup/online", methods=["POST"])
@login_required
def start_topup():
    if not _may_pay():
        abort(403)
    provider = card_provider()
    if provider is None:
        abort(404)
    form = TopupForm()
    if not form.validate_on_submit():
        return render_template("topup.html", **_topup_context(topup_form=form)), 400
    session = db()
    account = _account()
    request_data = None
    if isinstance(provider, yookassa.YooKassa):
        key = form.key.data or payments.new_key()
        if not payments.validate_key(key):
            abort(400)
        back = _settings().get("yookassa", "return_url") or url_for("money.topup_back",
                                                                      _external=True)
        saved = payments.saved_method(session, account.id, provider.name)
        setting = autopay.get(session, account.id)
        try:
            request_data = payments.CreateRequest(
                idempotence_key=key, return_url=f"{back}?key={key}",
                receipt=yookassa.receipt(account, form.amount.data, provider.vat_code),
                # Autopay on and no card saved yet: this payment saves it.
                save_method=bool(setting and setting.enabled and saved is None))
        except DomainError as error:
            return render_template("topup.html", error=error_text(error),
                                   **_topup_context(topup_form=form)), 400
    try:
        _row, checkout = payments.start(session, provider, account, form.amount.data,
                                        payments.Limits.from_settings(_settings()),
                                        actor=_actor(), request=request_data)
    except DomainError as error:
        session.rollback()
        if isinstance(error, payments.ProviderUnavailable):
            log.warning("cabinet.topup_failed account_id=%s provider=%s reason=%s",
                        current_user.account_id, provider.name, error)
        return render_template("topup.html", error=error_text(error),
                               **_topup_context(topup_form=form)), \
            503 if isinstance(error, payments.ProviderUnavailable) else 400
    session.commit()
    log.info("cabinet.topup_started account_id=%s provider=%s txn_id=%s",
             current_user.account_id, provider.name, checkout.txn_id)
    if request_data is None:  # the test bank: its page is ours
        return redirect(checkout.redirect_url)
    if not checkout.redirect_url or checkout.status != "pending":
        return redirect(url_for("money.topup_back", key=request_data.idempotence_key))
    # The cabinet's CSP says "form-action 'self'", and browsers apply it to
    # a form's redirects too: the provider's page is reached by a link on a
    # page of ours (a plain navigation), not by the form's redirect.
    return redirect(url_for("money.topup_go", key=request_data.idempotence_key))


def _own_payment(key: str):
    """The current account's payment by its idempotence key, or 404."""
    row = payments.find_by_key(db(), key) if payments.validate_key(key) else None
    if row is None or row.account_id != current_user.account_id:
        abort(404)
    return row


@blueprint.route("/topup/go")
@login_required
def topup_go():
    key = request.args.get("key", "")
    row = _own_payment(key)
    if row.status != "pending" or not row.confirmation_url:
        return redirect(url_for("money.topup_back", key=key))
    return render_template("topup_go.html", payment=row)


@blueprint.route("/topup/back")
@login_required
def topup_back():
    """Where YooKassa sends the subscriber back (by the payment's key)."""
    return render_template("topup_return.html", payment=_own_payment(request.args.get("key", "")))


@blueprint.route("/topup/return/<txn_id>")
@login_required
def topup_return(txn_id: str):
    """Where the bank sends the subscriber back: the payment's state."""
    row = payments.find(db(), TESTPAY, txn_id)
    if row is None or row.account_id != current_user.account_id:
        abort(404)
    return render_template("topup_return.html", payment=row)


# -- the test provider's bank page and callback ------------------------------

def _bank_row(txn_id: str):
    row = payments.find(db(), TESTPAY, txn_id)
    if row is None:
        abort(404)
    return row


@blueprint.route("/testpay/<txn_id>", methods=["GET", "POST"])
def testpay_page(txn_id: str):
    """The fake bank: Pay or Decline. Pressing a button makes the bank send
    its signed notice, delivered here the way the callback URL takes it."""
    provider = testpay()
    row = _bank_row(txn_id)
    form = BankForm()
    if request.method == "POST":
        if not form.validate_on_submit():
            abort(400)
        if row.status == "pending":
            status = "paid" if form.decision.data == "pay" else "declined"
            body, headers = provider.notice_body(row.txn_id, row.amount, status)
            response, code = _accept_callback(provider, body, headers)
            if code != 200:
                abort(code)
        return redirect(url_for("money.topup_return", txn_id=row.txn_id))
    return render_template("testpay.html", payment=row, form=form)


@blueprint.route("/payments/callback/testpay", methods=["POST"])
def testpay_callback():
    provider = testpay()
    response, code = _accept_callback(provider, request.get_data(cache=False),
                                      request.headers)
    return response, code


def _sender_allowed(address: str | None) -> bool:
    networks = current_app.extensions.get("abonent_yookassa_networks") or []
    if not networks:
        return True
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    return any(ip in network for network in networks)


@blueprint.route("/payments/callback/yookassa", methods=["POST"])
def yookassa_callback():
    """YooKassa's notification. It is not signed: the sender must be in
    yookassa.webhook_networks, and the payment's state is then taken from
    the API (rating.yookassa), never from the body."""
    provider = current_app.extensions.get("abonent_yookassa")
    if provider is None:
        abort(404)
    if not _sender_allowed(request.remote_addr):
        log.warning("payments.callback_refused provider=yookassa ip=%s reason=address not "
                    "allowed", request.remote_addr)
        return jsonify({"error": "this address may not send notifications"}), 403
    return _accept_callback(provider, request.get_data(cache=False), request.headers,
                            source="webhook")


def _accept_callback(provider: payments.Provider, body: bytes, headers, source="webhook"):
    """Verify and settle one provider notice: (JSON, status code)."""
    try:
        notice = provider.verify_callback(body, headers)
    except payments.PaymentError as error:
        log.warning("payments.callback_refused provider=%s ip=%s reason=%s", provider.name,
                    request.remote_addr, error)
        # The provider down: 503, so that it sends the notice again later.
        code = 503 if isinstance(error, payments.ProviderUnavailable) else 400
        return jsonify({"error": str(error)}), code
    session = db()
    try:
        result = payments.settle(session, provider.name, notice, source=source)
    except payments.PaymentError as error:
        session.rollback()
        log.warning("payments.callback_refused provider=%s ip=%s txn_id=%s reason=%s",
                    provider.name, request.remote_addr, notice.txn_id, error)
        return jsonify({"error": str(error)}), 400
    session.commit()
    log.info("payments.callback provider=%s txn_id=%s status=%s credited=%s late=%s",
             provider.name, notice.txn_id, result.status, result.credited, result.late)
    return jsonify({"ok": True, "status": result.status, "credited": result.credited}), 200


# -- autopayment -------------------------------------------------------------

def autopay_available() -> bool:
    return (current_app.extensions.get("abonent_yookassa") is not None
            and current_user.is_authenticated and _may_pay())


@blueprint.app_template_global("topup_key")
def topup_key() -> str:
    """A fresh idempotence key for a card top-up form."""
    return payments.new_key()


def _card_mask(title: str | None) -> str | None:
    # The provider's title is its own words ("Bank card *4444"); the
    # cabinet shows the digits only, in its own words.
    match = re.search(r"\*\d{4}", title or "")
    return match.group(0) if match else None


@blueprint.app_template_global("autopay_panel")
def autopay_panel():
    """The payments page's autopay block: the form and the saved card, or
    None when there is no YooKassa or the user may not pay."""
    if not has_request_context() or not autopay_available():
        return None
    session = db()
    setting = autopay.get(session, current_user.account_id)
    section = _settings().section("yookassa")
    form = AutopayForm(enabled=bool(setting and setting.enabled),
                       amount=setting.amount if setting else Decimal(section["autopay_amount"]),
                       days=setting.days_below if setting else section["autopay_days"])
    saved = payments.saved_method(session, current_user.account_id, yookassa.YooKassa.name)
    return {"form": form, "enabled": bool(setting and setting.enabled),
            "card": (_card_mask(saved.method_title) or "…") if saved else None}


@blueprint.route("/payments/autopay", methods=["POST"])
@login_required
def save_autopay():
    if not _may_pay():
        abort(403)
    if not autopay_available():
        abort(404)
    form = AutopayForm()
    if not form.validate_on_submit():
        flash(_("Please give the autopayment amount and a number of days from 1 to %(max)s.",
                max=autopay.MAX_DAYS), "error")
        return redirect(url_for("main.payments"))
    session = db()
    try:
        autopay.configure(session, _account(), enabled=form.enabled.data,
                          amount=form.amount.data, days_below=form.days.data,
                          limits=payments.Limits.from_settings(_settings()), actor=_actor())
    except DomainError as error:
        session.rollback()
        flash(error_text(error), "error")
        return redirect(url_for("main.payments"))
    session.commit()
    if form.enabled.data:
        flash(_("Autopayment is on: %(amount)s when the money lasts fewer than %(days)s days.",
                amount=money_with_currency(form.amount.data), days=form.days.data), "ok")
    else:
        flash(_("Autopayment is off."), "ok")
    return redirect(url_for("main.payments"))


# -- documents ----------------------------------------------------------------

def _timezone() -> str:
    return current_app.config["BABEL_DEFAULT_TIMEZONE"]


def _pdf_response(data: bytes, name: str) -> Response:
    return Response(data, mimetype="application/pdf",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@blueprint.route("/payments.pdf")
@login_required
def statement_pdf():
    account = _account()
    today = periods.local_today(_timezone())
    try:
        period = periods.days(periods.parse_day(request.args.get("from"), today.replace(day=1)),
                              periods.parse_day(request.args.get("to"), today), _timezone())
        statement = cabinet_ops.statement(db(), account.id, period.start_utc, period.end_utc)
    except (periods.PeriodError, DomainError) as error:
        return Response(labels.error_text(error) + "\n", status=400, mimetype="text/plain")
    data = pdf.statement(account, period, statement)
    return _pdf_response(data, f"statement-{account.number}-{period.first_day.isoformat()}-"
                               f"{period.last_day.isoformat()}.pdf")


def _company() -> Account:
    account = _account()
    if account.kind != "company":
        abort(404)
    return account


@blueprint.route("/documents")
@login_required
def documents_page():
    """Each month's statement for every account; invoices and acts for a
    company's too."""
    account = _account()
    today = periods.local_today(_timezone())
    first = today.replace(day=1)
    months = []
    for n in range(DOCUMENT_MONTHS):
        value = periods.shift_month(first, -n)
        day = dt.date.fromisoformat(f"{value}-01")
        months.append((value, format_date(day, "LLLL yyyy")))
    return render_template("documents.html", months=months, company=account.kind == "company")


@blueprint.route("/documents/statement-<month>.pdf")
@login_required
def month_statement(month: str):
    """A month's statement of the money flow, for a person or a company."""
    account = _account()
    today = periods.local_today(_timezone())
    try:
        period = periods.month(month, _timezone(), today)
        if period.first_day > today:
            abort(404)
        statement = cabinet_ops.statement(db(), account.id, period.start_utc, period.end_utc)
    except (periods.PeriodError, DomainError) as error:
        return Response(labels.error_text(error) + "\n", status=400, mimetype="text/plain")
    title = _("Statement for %(month)s", month=format_date(period.first_day, "LLLL yyyy"))
    data = pdf.statement(account, period, statement, title=title)
    return _pdf_response(data, f"statement-{account.number}-{month}.pdf")


@blueprint.route("/documents/<any(invoice, act):kind>-<month>.pdf")
@login_required
def month_document(kind: str, month: str):
    if kind not in DOCUMENT_KINDS:
        abort(404)
    account = _company()
    today = periods.local_today(_timezone())
    try:
        period = periods.month(month, _timezone(), today)
        if period.first_day > today:
            abort(404)
        document = documents.month_services(db(), account.id, period.first_day,
                                            period.last_day, period.start_utc, period.end_utc)
    except (periods.PeriodError, DomainError) as error:
        return Response(labels.error_text(error) + "\n", status=400, mimetype="text/plain")
    seller = _settings().get("payments", "seller")
    data = pdf.month_document(kind, account, document, seller)
    return _pdf_response(data, f"{kind}-{document.number}.pdf")


# -- wiring -------------------------------------------------------------------

def _account_key() -> str:
    return f"account:{getattr(current_user, 'account_id', None)}"


def _refused(response) -> bool:
    return response.status_code == 400


def _check_settings(settings) -> None:
    """A typo in [payments] stops the start, not a subscriber's payment."""
    from limits import parse_many

    from config.settings import SettingsError
    try:
        limits = payments.Limits.from_settings(settings)
    except (ValueError, TypeError, ArithmeticError):
        raise SettingsError("settings payments.min_topup and payments.max_topup must be "
                            "amounts like 10.00") from None
    if not Decimal("0") < limits.min_amount <= limits.max_amount:
        raise SettingsError("setting payments.min_topup must be positive and at most "
                            "payments.max_topup")
    if not 1 <= settings.get("yookassa", "vat_code") <= 10:
        raise SettingsError("setting yookassa.vat_code must be a VAT code 1..10")
    for network in settings.get("yookassa", "webhook_networks"):
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise SettingsError(f"setting yookassa.webhook_networks: {network!r} is not an "
                                f"address or a network") from None
    for key in ("voucher_limits_account", "voucher_limits_address"):
        try:
            parse_many(settings.get("payments", key))
        except ValueError:
            raise SettingsError(f"setting payments.{key} must look like "
                                f"'5 per minute;20 per hour'") from None


def init_app(app: Flask, limiter: Limiter, csrf: CSRFProtect) -> None:
    """Register the blueprint, rate-limit wrong voucher codes (per account,
    and per address with a higher ceiling for a CGNAT), exempt the signed
    callback from CSRF."""
    settings = app.extensions["abonent"].settings
    _check_settings(settings)
    app.config.setdefault("TESTPAY_ENABLED", settings.get("payments", "testpay_enabled"))
    app.extensions["abonent_yookassa"] = yookassa.from_settings(settings)
    app.extensions["abonent_yookassa_networks"] = [
        ipaddress.ip_network(network, strict=False)
        for network in settings.get("yookassa", "webhook_networks")]
    app.register_blueprint(blueprint)
    endpoint = "money.redeem_voucher"
    view = app.view_functions[endpoint]
    view = limiter.limit(settings.get("payments", "voucher_limits_account"),
                         key_func=_account_key, methods=["POST"], deduct_when=_refused,
                         scope="voucher-account")(view)
    view = limiter.limit(settings.get("payments", "voucher_limits_address"),
                         key_func=get_remote_address, methods=["POST"], deduct_when=_refused,
                         scope="voucher-address")(view)
    app.view_functions[endpoint] = view
    csrf.exempt(app.view_functions["money.testpay_callback"])
    # YooKassa's notification carries no token either; rating.yookassa
    # checks it with the API.
    csrf.exempt(app.view_functions["money.yookassa_callback"])


@blueprint.app_context_processor
def _money_globals():
    """The payments page (main.payments) shows a card top-up form when it may."""
    if not has_request_context():  # e.g. a mail rendered by a background job
        return {}
    return {"money_card_topup": bool(current_user.is_authenticated and _may_pay()
                                     and card_enabled())}


@blueprint.errorhandler(429)
def _too_many_codes(_error):
    if not current_user.is_authenticated:
        return render_template("error.html", code=429, message=None), 429
    return render_template("topup.html", error=_("Too many wrong voucher codes. Please wait "
                                                 "and try again later."),
                           **_topup_context()), 429

