"""Online acquiring through YooKassa, with its official SDK (``yookassa``).

A ``YooKassa`` is a rating.payments provider: ``create`` (with an
idempotence key, the 54-FZ receipt, and either a redirect for the
subscriber or a saved payment method for autopay), ``verify_callback``,
``fetch`` (the poll for a lost webhook) and ``refund``.

How a webhook is verified: YooKassa does not sign its notifications. The
body is only a hint ("payment X changed"); we take the payment's id from
it and ask the API (``GET /v3/payments/X`` with our shop's credentials)
for its status and amount, and settle on that answer alone. A forged
webhook can therefore only make us ask the API about a payment; it cannot
credit anything. The sender allow-list (``yookassa.webhook_networks``, by
default the networks YooKassa publishes, as the SDK's SecurityHelper
lists them) is checked by the cabinet before that, so strangers cannot
make us spend API calls; behind a proxy the address is the proxy's, so the
list may be emptied, and the API check still holds.

The SDK keeps its settings in class attributes (``Configuration``), one
set per process: one YooKassa shop per process. Each call sets them (under a
lock) when they differ from ours. The SDK is never given a logger: its
request log would carry the Authorization header (shop id and secret key).

Errors: any SDK or network failure becomes payments.ProviderUnavailable
with a sentence that names no secret; a payment the API does not know is
payments.UnknownTransaction.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from decimal import Decimal
from typing import Mapping

from config.db import money
from rating.models import Account
from rating.payments import (AmountMismatch, Checkout, CreateRequest, Notice, PaymentError,
                             ProviderUnavailable, RefundResult, UnknownTransaction)

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.yookassa.ru/v3"
# The networks YooKassa sends notifications from (its documentation, and
# yookassa.domain.common.SecurityHelper.YOOKASSA_NETWORKS in the SDK).
DEFAULT_NETWORKS = ["77.75.153.0/25", "77.75.156.11/32", "77.75.156.35/32",
                    "77.75.154.128/25", "185.71.76.0/27", "185.71.77.0/27",
                    "2a02:5180:0:1509::/64", "2a02:5180:0:2655::/64",
                    "2a02:5180:0:1533::/64", "2a02:5180:0:2669::/64"]
# VAT codes of the receipt (1: no VAT, 2: 0%, 3: 10%, 4: 20%, 5: 10/110, 6: 20/120,
# 7: 5%, 8: 7%, 9: 5/105, 10: 7/107).
VAT_CODES = range(1, 11)
# YooKassa's payment statuses, as ours.
STATUS = {"succeeded": "paid", "canceled": "declined", "pending": "pending",
          "waiting_for_capture": "pending"}
REFUND_STATUS = {"succeeded": "succeeded", "canceled": "canceled", "pending": "pending"}

_SDK_LOCK = threading.Lock()


def receipt(account: Account, amount: Decimal, vat_code: int) -> dict:
    """The 54-FZ receipt data sent with a payment (or a refund): the
    subscriber's e-mail, else phone, and one service line."""
    customer = {}
    if account.email:
        customer["email"] = account.email.strip()
    else:
        phone = phone_digits(account.phone)
        if phone:
            customer["phone"] = phone
    if not customer:
        raise PaymentError("a card payment needs an e-mail or a phone in the account's "
                           "contacts for the receipt")
    return {
        "customer": customer,
        "items": [{
            "description": f"Оплата услуг связи, л/с {account.number}",
            "quantity": "1.00",
            "amount": {"value": f"{money(amount):.2f}", "currency": "RUB"},
            "vat_code": int(vat_code),
            "payment_subject": "service",
            "payment_mode": "full_prepayment",
        }],
    }


def phone_digits(phone: str | None) -> str | None:
    """E.164 digits as the receipt wants them: 8 900 … and +7 900 … both 7900…"""
    digits = re.sub(r"\D", "", phone or "")
    if len(digits) == 11 and digits[0] == "8":
        digits = "7" + digits[1:]
    elif len(digits) == 10:
        digits = "7" + digits
    return digits if 11 <= len(digits) <= 15 else None


class YooKassa:
    name = "yookassa"

    def __init__(self, shop_id: str, secret_key: str, *, api_url: str = DEFAULT_API_URL,
                 vat_code: int = 1, return_url: str = ""):
        if not shop_id or not secret_key:
            raise ValueError("YooKassa needs a shop id and a secret key")
        self.shop_id = str(shop_id)
        self._secret = secret_key
        self.api_url = api_url.rstrip("/")
        self.vat_code = int(vat_code)
        self.return_url = return_url

    def __repr__(self) -> str:  # never show the secret
        return f"YooKassa(shop_id={self.shop_id!r}, api_url={self.api_url!r})"

    # -- the SDK ----------------------------------------------------------------

    def _configure(self) -> None:
        from yookassa import Configuration
        wanted = (self.shop_id, self._secret, self.api_url)
        with _SDK_LOCK:
            if (Configuration.account_id, Configuration.secret_key,
                    Configuration.api_url) != wanted or Configuration.logger is not None:
                # No logger (it would log the Authorization header), no
                # retries of the SDK's own.
                Configuration.configure(self.shop_id, self._secret, api_url=self.api_url,
                                        max_attempts=1)
                Configuration.logger = None

    def _call(self, what: str, function, *args, **kwargs):
        from yookassa.domain.exceptions import ApiError, NotFoundError
        # The SDK reads its (global) configuration when a call begins; one
        # shop per process, so calls need not wait for each other.
        self._configure()
        try:
            return function(*args, **kwargs)
        except NotFoundError:
            raise UnknownTransaction(f"YooKassa does not know {what}") from None
        except ApiError as error:
            raise ProviderUnavailable(f"YooKassa refused {what}: "
                                      f"{_api_reason(error)}") from None
        except ValueError as error:  # the SDK's own check of the request
            raise PaymentError(f"YooKassa's SDK refused {what}: {str(error)[:200]}") \
                from None
        except OSError as error:  # requests' errors are OSErrors
            raise ProviderUnavailable(f"YooKassa did not answer {what}: "
                                      f"{type(error).__name__}") from None
        except AttributeError:  # the SDK on a response with no body
            raise ProviderUnavailable(f"YooKassa did not answer {what}") from None

    # -- the provider -----------------------------------------------------------

    def create(self, account: Account, amount: Decimal,
               request: CreateRequest | None = None) -> Checkout:
        from yookassa import Payment
        if request is None:
            raise PaymentError("a YooKassa payment needs an idempotence key")
        params = {
            "amount": {"value": f"{money(amount):.2f}", "currency": "RUB"},
            "capture": True,
            "description": request.description or f"Оплата услуг связи, л/с {account.number}",
            "metadata": {"account": account.number, "key": request.idempotence_key},
        }
        if request.receipt:
            params["receipt"] = request.receipt
        if request.method_id:
            params["payment_method_id"] = request.method_id
        else:
            params["confirmation"] = {"type": "redirect",
                                      "return_url": request.return_url or self.return_url}
            if request.save_method:
                params["save_payment_method"] = True
        answer = self._call("the new payment", Payment.create, params, request.idempotence_key)
        notice = _notice(answer)
        if notice.amount != money(amount):
            raise AmountMismatch(f"YooKassa created payment {notice.txn_id} for {notice.amount}, "
                                 f"not {money(amount)}")
        confirmation = getattr(answer, "confirmation", None)
        url = getattr(confirmation, "confirmation_url", None) or ""
        return Checkout(url, notice.txn_id, notice.status)

    def fetch(self, txn_id: str) -> Notice:
        from yookassa import Payment
        if not _ID.match(txn_id or ""):
            raise UnknownTransaction("a YooKassa payment id looks like a UUID")
        return _notice(self._call(f"payment {txn_id}", Payment.find_one, txn_id))

    def verify_callback(self, body: bytes, headers: Mapping[str, str]) -> Notice:
        """The notification names a payment; the API says what it is."""
        try:
            data = json.loads(body)
            kind, event, payment_id = data["type"], data["event"], data["object"]["id"]
        except (ValueError, TypeError, KeyError):
            raise PaymentError("the callback body is not a YooKassa notification") from None
        if kind != "notification" or not isinstance(event, str) \
                or not event.startswith("payment.") or not isinstance(payment_id, str):
            raise PaymentError("the callback body is not a YooKassa payment notification")
        return self.fetch(payment_id)

    def refund(self, txn_id: str, amount: Decimal, *, idempotence_key: str,
               receipt: dict | None = None) -> RefundResult:
        from yookassa import Refund
        params = {"payment_id": txn_id,
                  "amount": {"value": f"{money(amount):.2f}", "currency": "RUB"}}
        if receipt:
            params["receipt"] = receipt
        answer = self._call(f"the refund of payment {txn_id}", Refund.create, params,
                            idempotence_key)
        status = REFUND_STATUS.get(str(answer.status))
        if status is None:
            raise ProviderUnavailable(f"YooKassa answered the refund with status "
                                      f"{answer.status!r}")
        return RefundResult(str(answer.id), status, money(str(answer.amount.value)))


_ID = re.compile(r"^[0-9A-Za-z-]{1,64}$")


def _api_reason(error) -> str:
    content = error.args[0] if error.args else {}
    if isinstance(content, dict):
        return str(content.get("description") or content.get("code") or "an error")[:200]
    return "an error"


def _notice(answer) -> Notice:
    status = STATUS.get(str(answer.status))
    if status is None:
        raise ProviderUnavailable(f"YooKassa answered with status {answer.status!r}")
    method = getattr(answer, "payment_method", None)
    method_id = method_title = None
    if method is not None and getattr(method, "saved", False) and status == "paid":
        method_id = str(method.id)
        method_title = _method_title(method)
    return Notice(str(answer.id), money(str(answer.amount.value)), status,
                  method_id, method_title)


def _method_title(method) -> str:
    title = getattr(method, "title", None)
    if title:
        return str(title)[:64]
    card = getattr(method, "card", None)
    last4 = getattr(card, "last4", None) if card is not None else None
    return f"*{last4}" if last4 else str(getattr(method, "type", "") or "")[:64]


def from_settings(settings) -> YooKassa | None:
    """The provider the settings describe, or None when it is not configured."""
    section = settings.section("yookassa")
    if not (section["shop_id"] and section["secret_key"]):
        return None
    return YooKassa(section["shop_id"], section["secret_key"],
                    api_url=section["api_url"] or DEFAULT_API_URL,
                    vat_code=section["vat_code"], return_url=section["return_url"])
