"""Words for the domain's codes (ledger kinds, profiles, log actions) and
the domain's error sentences, marked for translation."""

from __future__ import annotations

import re
from decimal import Decimal

from flask_babel import gettext
from flask_babel import lazy_gettext as _l

LEDGER_KINDS = {
    "payment": _l("Payment"), "fee": _l("Subscription fee"), "traffic": _l("Traffic"),
    "option": _l("Option"), "promised": _l("Promised payment"), "refund": _l("Refund"),
    "correction": _l("Correction"),
    "discount": _l("Discount"), "bonus": _l("Bonus"),
    "call": _l("Calls"),
}

PROFILES = {
    "normal": (_l("Normal speed"), _l("Your balance is positive: the tariff's full speed.")),
    "turbo": (_l("Turbo"), _l("Turbo is on: the speed is raised until the time shown.")),
    "throttled": (_l("Limited speed"),
                  _l("The balance is below zero, so the speed is limited. "
                     "Top up the account to get the full speed back.")),
    "suspended": (_l("Suspended"),
                  _l("The balance is below the credit limit, so the access is suspended. "
                     "Top up the account to restore it.")),
    "limit-throttled": (_l("Slowed by the spending limit"),
                        _l("The company's monthly spending limit is reached, so the speed is "
                           "reduced until the next month or until the limit is raised.")),
    "blocked": (_l("Blocked"),
                _l("The operator has blocked the account, so the access is off. "
                   "Please contact support.")),
}

ACTIONS = {
    "account.add": _l("Account opened"), "cabinet_user.add": _l("Cabinet login created"),
    "payment.add": _l("Payment received"), "contacts.update": _l("Contacts changed"),
    "password.change": _l("Password changed"),
    "sessions.end_all": _l("Logged out on every device"),
    "promised.grant": _l("Promised payment taken"),
    "promised.repaid": _l("Promised payment repaid"),
    "promised.expired": _l("Promised payment expired"),
    "tariff.change": _l("Tariff change ordered"),
    "tariff.cancel": _l("Tariff change cancelled"),
    "tariff.applied": _l("Tariff changed"),
    "account.freeze": _l("Account frozen"), "account.unfreeze": _l("Account unfrozen"),
    "option.buy": _l("Option bought"), "option.expire": _l("Option ended"),
    "voucher.redeem": _l("Voucher redeemed"), "topup.start": _l("Card payment started"),
    "topup.declined": _l("Card payment declined"),
    "autopay.on": _l("Autopayment turned on"), "autopay.off": _l("Autopayment turned off"),
    "password_reset.request": _l("Password reset link requested"),
    "password.reset": _l("Password reset by e-mail link"),
    "notify.update": _l("Notification settings changed"),
    "request.add": _l("Service request added"),
    "request.status": _l("Service request updated"),
    "request.message": _l("Message in a service request"),
    "api_token.create": _l("API token created"), "api_token.revoke": _l("API token revoked"),
    "api_token.revoke_all": _l("Every API token revoked"),
    "package.on": _l("Package switched on"), "package.off": _l("Package switched off"),
    "discount.add": _l("Discount given"), "discount.remove": _l("Discount removed"),
    "promo.redeem": _l("Promo code used"),
    "phone.add": _l("Phone number added"), "phone.remove": _l("Phone number removed"),
    "calls.rerate": _l("Calls re-rated"),
    "ledger.charge": _l("Charge by the operator"), "ledger.refund": _l("Refund"),
    "ledger.transfer": _l("Money transferred between accounts"),
    "ledger.reverse": _l("Operation cancelled"),
    "account.block": _l("Account blocked"), "account.unblock": _l("Account unblocked"),
    "account.close": _l("Account closed"), "account.edit": _l("Account details changed"),
    "service.add": _l("Service connected"), "service.edit": _l("Service changed"),
    "service.remove": _l("Service disconnected"),
    "session.kick": _l("Session ended by the operator"),
    "cabinet_user.link": _l("Login given access to the account"),
    "cabinet_user.unlink": _l("Login's access to the account removed"),
    "cabinet_user.remove": _l("Cabinet login removed"),
    "cabinet_user.reset_password": _l("Cabinet password reset by the operator"),
}
# What an action the cabinet has no words for is called.
OTHER_ACTION = _l("Change by the operator")

FIELDS = {"email": _l("E-mail"), "phone": _l("Mobile phone"),
          "token_name": _l("Token name"), "prefix": _l("Token"), "scope": _l("Rights"),
          "expires_at": _l("Expires"), "tokens": _l("Tokens"),
          "phone_landline": _l("Landline phone"), "amount": _l("Amount"),
          "voucher": _l("Voucher"), "txn_id": _l("Transaction"), "provider": _l("Provider"),
          "due_at": _l("Due"), "tariff": _l("Tariff"), "starts_on": _l("Starts on"),
          "previous_changed_at": _l("Previous tariff change"), "until": _l("Until"),
          "code": _l("Option"), "price": _l("Price"), "ends_at": _l("Ends"),
          "channels": _l("Channels"),
          "low_balance_threshold": _l("Low-balance threshold"),
          "telegram_chat_id": _l("Telegram chat id"), "request": _l("Request No."),
          "topic": _l("Topic"), "status": _l("Status"), "answer": _l("Answer"),
          "text": _l("Message"),
          "package": _l("Package"), "charged": _l("Charged"), "given": _l("Given"),
          "discount": _l("Discount No."), "percent": _l("Percent"),
          "valid_from": _l("From"), "valid_until": _l("Until"), "target": _l("On"),
          "login": _l("Login"), "role": _l("Role"), "external_id": _l("Payment ID"),
          "number": _l("Account number"), "counterpart": _l("Other account"),
          "reason": _l("Reason"), "entry_id": _l("Operation No."),
          "reversed_entry_id": _l("Cancelled operation No."), "balance": _l("Balance"),
          "fee": _l("Fee"), "state": _l("State"), "kind": _l("Kind"), "name": _l("Name"),
          "mac": _l("MAC address"), "pool": _l("Address pool"),
          "static_ipv4": _l("IP address"), "ipv6_prefix": _l("IPv6 prefix"),
          "circuit_id": _l("Port (Option 82)"), "expires_on": _l("Valid until")}

# rating's DomainError sentences shown in the cabinet; anything else is
# shown as it is.
DOMAIN_MESSAGES = (
    _l("e-mail must look like name@example.ru"),
    _l("a phone number may hold only digits, spaces, brackets, dashes and a leading +"),
    _l("a phone number must have 5 to 15 digits"),
    _l("the current password is wrong"),
    _l("the new password must be 8 to 256 characters long"),
    _l("the new password must differ from the current one"),
    _l("the password must not be the login"),
    _l("the period must end after it starts"),
    _l("a period may be at most 400 days"),
    _l("a month must look like 2026-11"),
    _l("a date must look like 2026-11-23"),
    _l("a promised payment must be an amount like 100 or 99.50"),
)




def N_(message: str) -> str:
    """Marks a msgid for extraction (pybabel -k N_) without translating it."""
    return message


# Sentences with a figure in them: (pattern, msgid with %(value)s).
PATTERNS = (
    (re.compile(r"^a promised payment must be between 0\.01 and (?P<value>[0-9.]+)$"),
     N_("a promised payment must be between 0.01 and %(value)s")),
    (re.compile(r"^a promised payment is available when the balance is below "
                r"(?P<value>[0-9.]+)$"),
     N_("a promised payment is available when the balance is below %(value)s")),
    (re.compile(r"^a promised payment can be taken once in (?P<value>[0-9]+) days$"),
     N_("a promised payment can be taken once in %(value)s days")),
    (re.compile(r"^the tariff can be changed again from (?P<value>[0-9-]+)$"),
     N_("the tariff can be changed again from %(value)s")),
    (re.compile(r"^a freeze lasts from (?P<low>[0-9]+) to (?P<high>[0-9]+) days$"),
     N_("a freeze lasts from %(low)s to %(high)s days")),
)
STATIC_MESSAGES = (_l("a promised payment needs an active account"),
                   _l("not enough money for this option"),
                   _l("a turbo is already active"),
                   _l("options can be bought only on an active account"))


def _figure(value: str) -> str:
    """An amount in the sentence is shown as money in the page's locale."""
    if "." in value:
        from cabinet.formatting import money
        return money(Decimal(value))
    return value


def error_text(error: Exception) -> str:
    """The error's sentence in the page's language, capitalised."""
    message = str(error)
    for pattern, template in PATTERNS:
        match = pattern.match(message)
        if match:
            values = {name: _figure(value) for name, value in match.groupdict().items()}
            text = gettext(template, **values)
            break
    else:
        text = gettext(message)
    return text[:1].upper() + text[1:]


PROMISE_STATUSES = {"open": _l("open"), "repaid": _l("repaid"), "expired": _l("expired")}


def promise_status(code: str) -> str:
    return str(PROMISE_STATUSES.get(code, code))


def kind(code: str) -> str:
    return str(LEDGER_KINDS.get(code, code))


def action(code: str) -> str:
    return str(ACTIONS.get(code, OTHER_ACTION))


def field(code: str) -> str:
    return str(FIELDS.get(code, code))
