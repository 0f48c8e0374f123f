"""A fake Telegram Bot API on loopback: ``/bot<token>/<method>``.

Answers getMe, sendMessage (kept in ``sent``) and getUpdates (from
``updates``, honouring ``offset``); a wrong token gets 401 as Telegram's
does, a chat in ``blocked`` gets 403 ("bot was blocked by the user").
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs


class FakeBotApi:
    def __init__(self, token: str = "123456:TEST-token-secret"):
        self.token = token
        self.sent: list[dict] = []
        self.updates: list[dict] = []
        self.blocked: set[str] = set()
        self.calls: list[str] = []
        self.requests_seen: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode()
                if self.headers.get("Content-Type", "").startswith("application/json"):
                    params = json.loads(raw or "{}")
                else:
                    params = {k: v[0] for k, v in parse_qs(raw).items()}
                fake.requests_seen.append(self.path)
                prefix = f"/bot{fake.token}/"
                if not self.path.startswith(prefix):
                    return self._answer(401, {"ok": False, "error_code": 401,
                                              "description": "Unauthorized"})
                method = self.path[len(prefix):]
                fake.calls.append(method)
                status, payload = fake.handle(method, params)
                self._answer(status, payload)

            do_GET = do_POST

            def _answer(self, status, payload):
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/bot"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def handle(self, method: str, params: dict):
        if method == "getMe":
            return 200, {"ok": True, "result": {"id": 123456, "is_bot": True,
                                                "first_name": "ISP", "username": "isp_test_bot"}}
        if method == "sendMessage":
            chat = str(params.get("chat_id"))
            if chat in self.blocked:
                return 403, {"ok": False, "error_code": 403,
                             "description": "Forbidden: bot was blocked by the user"}
            self.sent.append({"chat_id": chat, "text": params.get("text")})
            return 200, {"ok": True, "result": {
                "message_id": len(self.sent), "date": int(time.time()),
                "chat": {"id": int(chat), "type": "private"}, "text": params.get("text")}}
        if method == "getUpdates":
            offset = int(params.get("offset") or 0)
            return 200, {"ok": True, "result": [u for u in self.updates
                                                if u["update_id"] >= offset]}
        return 404, {"ok": False, "error_code": 404, "description": "Not Found"}

    def add_start(self, chat_id: int, text: str) -> None:
        update_id = 1000 + len(self.updates)
        self.updates.append({"update_id": update_id, "message": {
            "message_id": update_id, "date": int(time.time()), "text": text,
            "chat": {"id": chat_id, "type": "private"},
            "from": {"id": chat_id, "is_bot": False, "first_name": "Ivan"}}})

    def close(self):
        self.server.shutdown()
        self.server.server_close()
