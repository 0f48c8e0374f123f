"""A fake of YooKassa's HTTP API v3 on 127.0.0.1, for the tests: the few
endpoints abonent calls (POST /v3/payments, GET /v3/payments/{id},
POST /v3/refunds), a confirmation page for the subscriber's browser
(/pay/{id}, Pay or Decline), and the notification it then sends to the
cabinet's webhook — or, with ``lose_webhooks``, does not send.

Like the real API it wants Basic auth (shop id : secret key) and an
Idempotence-Key on every POST, and answers a repeated key with the first
answer (a different body under a used key is an error). The bank side is
all it fakes: abonent talks to it through the real SDK over real HTTP.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import threading
import urllib.request
import uuid
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class FakeYooKassa:
    def __init__(self, shop_id: str = "123456", secret_key: str = "test_secret_key_XYZ"):
        self.shop_id, self.secret_key = shop_id, secret_key
        self.payments: dict[str, dict] = {}
        self.refunds: dict[str, dict] = {}
        self.answers: dict[tuple[str, str], tuple[str, int, dict]] = {}  # (path, key)
        self.requests: list[dict] = []  # every API call: method, path, key, body, auth_ok
        self.webhook_url: str | None = None
        self.lose_webhooks = False
        self.webhooks_sent: list[dict] = []
        self.saved_methods: set[str] = set()
        self.stopped = False
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def api_url(self) -> str:
        return self.url + "/v3"

    def start(self) -> "FakeYooKassa":
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop answering (a test may stop it early: the provider is down)."""
        if self.stopped:
            return
        self.stopped = True
        self.server.shutdown()
        self.server.server_close()

    # -- the bank's side, by hand ---------------------------------------------

    def decide(self, payment_id: str, paid: bool = True) -> dict:
        """The subscriber confirms (or cancels) at the bank; the webhook
        goes out unless webhooks are lost."""
        with self.lock:
            payment = self.payments[payment_id]
            if payment["status"] == "pending":
                self._finish(payment, paid)
        if not self.lose_webhooks:
            self.send_webhook(payment_id)
        return payment

    def _finish(self, payment: dict, paid: bool) -> None:
        payment["status"] = "succeeded" if paid else "canceled"
        payment["paid"] = paid
        if paid:
            method_id = payment["payment_method"]["id"]
            if payment.pop("_save", False):
                payment["payment_method"]["saved"] = True
                self.saved_methods.add(method_id)
            payment["captured_at"] = _now()
            payment["refundable"] = True
        else:
            payment["cancellation_details"] = {"party": "yoo_money",
                                               "reason": "canceled_by_merchant"}

    def notification(self, payment_id: str) -> bytes:
        payment = self._public(self.payments[payment_id])
        event = {"succeeded": "payment.succeeded", "canceled": "payment.canceled"}.get(
            payment["status"], "payment.waiting_for_capture")
        return json.dumps({"type": "notification", "event": event, "object": payment}).encode()

    def send_webhook(self, payment_id: str, url: str | None = None) -> int:
        body = self.notification(payment_id)
        request = urllib.request.Request(url or self.webhook_url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                code = answer.status
        except urllib.error.HTTPError as error:
            with error:  # it holds the response's socket; unclosed, a GC cycle warns later
                code = error.code
        self.webhooks_sent.append({"payment_id": payment_id, "code": code})
        return code

    # -- the API -------------------------------------------------------------

    @staticmethod
    def _public(payment: dict) -> dict:
        return {k: v for k, v in payment.items() if not k.startswith("_")}

    def _auth_ok(self, header: str | None) -> bool:
        expected = base64.b64encode(f"{self.shop_id}:{self.secret_key}".encode()).decode()
        return header == f"Basic {expected}"

    def _create_payment(self, body: dict) -> tuple[int, dict]:
        amount = body.get("amount") or {}
        if Decimal(str(amount.get("value", "0"))) <= 0:
            return 400, _error("invalid_request", "amount")
        payment_id = str(uuid.uuid4())
        method_id = body.get("payment_method_id")
        payment = {
            "id": payment_id, "status": "pending", "paid": False,
            "amount": {"value": f"{Decimal(str(amount['value'])):.2f}",
                       "currency": amount.get("currency", "RUB")},
            "description": body.get("description", ""),
            "recipient": {"account_id": self.shop_id, "gateway_id": "1"},
            "created_at": _now(), "test": True, "refundable": False,
            "metadata": body.get("metadata") or {},
            "payment_method": {"type": "bank_card", "id": method_id or str(uuid.uuid4()),
                               "saved": False, "title": "Bank card *4444",
                               "card": {"first6": "555555", "last4": "4444",
                                        "expiry_month": "12", "expiry_year": "2030",
                                        "card_type": "MasterCard"}},
            "_receipt": body.get("receipt"),
            "_save": bool(body.get("save_payment_method")),
        }
        if method_id:
            if method_id not in self.saved_methods:
                return 400, _error("invalid_request", "payment_method_id")
            payment["payment_method"]["saved"] = True
            self._finish(payment, True)
        else:
            confirmation = body.get("confirmation") or {}
            payment["confirmation"] = {"type": "redirect",
                                       "return_url": confirmation.get("return_url", ""),
                                       "confirmation_url": f"{self.url}/pay/{payment_id}"}
        self.payments[payment_id] = payment
        return 200, self._public(payment)

    def _create_refund(self, body: dict) -> tuple[int, dict]:
        payment = self.payments.get(body.get("payment_id", ""))
        if payment is None:
            return 404, _error("not_found", "payment_id")
        if payment["status"] != "succeeded":
            return 400, _error("invalid_request", "payment_id")
        value = Decimal(str((body.get("amount") or {}).get("value", "0")))
        done = sum((Decimal(r["amount"]["value"]) for r in self.refunds.values()
                    if r["payment_id"] == payment["id"]), Decimal(0))
        if value <= 0 or done + value > Decimal(payment["amount"]["value"]):
            return 400, _error("invalid_request", "amount")
        refund = {"id": str(uuid.uuid4()), "payment_id": payment["id"], "status": "succeeded",
                  "amount": {"value": f"{value:.2f}", "currency": "RUB"},
                  "created_at": _now(), "_receipt": body.get("receipt")}
        self.refunds[refund["id"]] = refund
        return 200, self._public(refund)

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code: int, payload, content_type="application/json",
                      headers=None):
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_GET(self):
                if self.path.startswith("/pay/"):
                    return self._pay_page(self.path[5:])
                auth_ok = fake._auth_ok(self.headers.get("Authorization"))
                fake.requests.append({"method": "GET", "path": self.path, "auth_ok": auth_ok})
                if not auth_ok:
                    return self._send(401, _error("invalid_credentials", None))
                if self.path.startswith("/v3/payments/"):
                    payment = fake.payments.get(self.path.rsplit("/", 1)[1])
                    if payment is None:
                        return self._send(404, _error("not_found", "payment_id"))
                    return self._send(200, fake._public(payment))
                return self._send(404, _error("not_found", None))

            def do_POST(self):
                if self.path.startswith("/pay/"):
                    return self._pay_decision(self.path[5:])
                raw = self._body()
                key = self.headers.get("Idempotence-Key")
                auth_ok = fake._auth_ok(self.headers.get("Authorization"))
                body = json.loads(raw or b"{}")
                fake.requests.append({"method": "POST", "path": self.path, "key": key,
                                      "body": body, "auth_ok": auth_ok})
                if not auth_ok:
                    return self._send(401, _error("invalid_credentials", None))
                if not key:
                    return self._send(400, _error("invalid_request", "Idempotence-Key"))
                with fake.lock:
                    seen = fake.answers.get((self.path, key))
                    if seen is not None:
                        digest, code, answer = seen
                        if digest != raw.decode():
                            return self._send(400, _error("invalid_request",
                                                          "Idempotence-Key"))
                        # The first answer, as it is now (YooKassa returns
                        # the object's current state).
                        current = fake.payments.get(answer.get("id")) \
                            or fake.refunds.get(answer.get("id"))
                        return self._send(code, fake._public(current) if current else answer)
                    if self.path == "/v3/payments":
                        code, answer = fake._create_payment(body)
                    elif self.path == "/v3/refunds":
                        code, answer = fake._create_refund(body)
                    else:
                        code, answer = 404, _error("not_found", None)
                    fake.answers[(self.path, key)] = (raw.decode(), code, answer)
                return self._send(code, answer)

            def _pay_page(self, payment_id: str):
                payment = fake.payments.get(payment_id)
                if payment is None:
                    return self._send(404, b"no such payment", "text/plain")
                page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width"><title>Fake YooKassa</title></head>
<body><main><h1>Fake YooKassa</h1>
<p>Amount: <span data-test="fake-amount">{html.escape(payment['amount']['value'])}</span></p>
<form method="post"><button name="decision" value="pay" data-test="fake-pay">Pay</button>
<button name="decision" value="decline" data-test="fake-decline">Decline</button></form>
</main></body></html>"""
                return self._send(200, page.encode(), "text/html; charset=utf-8")

            def _pay_decision(self, payment_id: str):
                payment = fake.payments.get(payment_id)
                if payment is None:
                    return self._send(404, b"no such payment", "text/plain")
                decision = parse_qs(self._body().decode()).get("decision", [""])[0]
                fake.decide(payment_id, decision == "pay")
                return self._send(303, b"", "text/plain",
                                  {"Location": payment["confirmation"]["return_url"]})

        return Handler


def _error(code: str, parameter: str | None) -> dict:
    return {"type": "error", "id": str(uuid.uuid4()), "code": code,
            "description": f"{code}: {parameter or ''}".strip(), "parameter": parameter}
