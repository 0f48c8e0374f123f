"""The NAS side of CoA, simulated: answers CoA/Disconnect-Requests with an
ACK, or a NAK, or not at all (loss), sometimes twice (duplication), and
remembers the speed each session was told. Used by tests and by
``abonent nas-sim``; a real NAS (or FreeRADIUS's CoA listener) replaces it
where one can run."""

from __future__ import annotations

import hashlib
import hmac
import random
import socket
import threading
import time
from dataclasses import dataclass, field

from aaa import packet as wire
from aaa.dictionary import encode

ACCT_SESSION_ID = 44


@dataclass
class CoaResponder:
    secret: bytes
    host: str = "127.0.0.1"
    port: int = 0
    drop_rate: float = 0.0
    duplicate_rate: float = 0.0
    nak_sessions: set[str] = field(default_factory=set)
    # A NAS that answers nothing at all while this is set (a BRAS that is
    # down or unreachable); cleared, it answers again.
    silent: bool = False
    # A share of requests NAK'd with this Error-Cause (506: Resources
    # Unavailable, a transient refusal), before loss is drawn.
    nak_rate: float = 0.0
    nak_cause: int = 506
    seed: int = 1
    # What each session was told last: Acct-Session-Id -> attributes.
    applied: dict[str, dict[int, list[bytes]]] = field(default_factory=dict)
    disconnected: set[str] = field(default_factory=set)
    requests_seen: int = 0
    # (identifier, authenticator) of every request, retransmits included.
    received: list[tuple[int, bytes]] = field(default_factory=list)
    # When a request for each session first arrived (time.monotonic()).
    first_seen: dict[str, float] = field(default_factory=dict)

    def start(self) -> "CoaResponder":
        self._rng = random.Random(self.seed)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((self.host, self.port))
        self.port = self._sock.getsockname()[1]
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="coa-responder", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self._sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            reply = self.answer(data)
            if reply is None:
                continue
            copies = 2 if self._rng.random() < self.duplicate_rate else 1
            for _ in range(copies):
                self._sock.sendto(reply, peer)

    def answer(self, data: bytes) -> bytes | None:
        try:
            request = wire.decode(data)
        except wire.MalformedPacket:
            return None
        expected = hashlib.md5(data[:4] + bytes(16) + data[20:] + self.secret).digest()
        if not hmac.compare_digest(expected, request.authenticator):
            return None  # RFC 5176 §3.5: a bad authenticator is silently dropped
        self.requests_seen += 1
        self.received.append((request.identifier, request.authenticator))
        session_id = request.text(ACCT_SESSION_ID) or ""
        self.first_seen.setdefault(session_id, time.monotonic())
        disconnect = request.code == wire.DISCONNECT_REQUEST
        # A session the NAS does not know is refused every time; loss is
        # simulated on the rest, so a test can tell a NAK from a timeout.
        if self.silent:
            return None
        if session_id in self.nak_sessions:
            code = wire.DISCONNECT_NAK if disconnect else wire.COA_NAK
            return wire.encode_reply(code, request, self.secret, encode("Error-Cause", 503))
        if self.nak_rate and self._rng.random() < self.nak_rate:
            code = wire.DISCONNECT_NAK if disconnect else wire.COA_NAK
            return wire.encode_reply(code, request, self.secret,
                                     encode("Error-Cause", self.nak_cause))
        if self._rng.random() < self.drop_rate:
            return None
        if disconnect:
            self.disconnected.add(session_id)
            return wire.encode_reply(wire.DISCONNECT_ACK, request, self.secret)
        self.applied[session_id] = dict(request.attributes)
        return wire.encode_reply(wire.COA_ACK, request, self.secret)
