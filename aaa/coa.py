"""CoA-Request / Disconnect-Request client (RFC 5176) with RFC 5080 timers.

One exchange = one request, retransmitted byte for byte (same Identifier,
same Request Authenticator, so the NAS's duplicate detection sees a
retransmit, not a new request) on RFC 5080 §2.2.1's schedule: IRT 2 s,
doubling, MRT 16 s, MRD 30 s, each interval randomised by ±10 %.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import random
import select
import socket
import time
from dataclasses import dataclass

from aaa import packet as wire
from aaa.dictionary import encode_all

ERROR_CAUSE = 101
# RFC 5176 §3.5: Session Context Not Found. For a Disconnect it means the
# session is gone already, which is what we wanted.
SESSION_CONTEXT_NOT_FOUND = 503

IRT_S, MRT_S, MRD_S, JITTER = 2.0, 16.0, 30.0, 0.1


class Outcome(enum.Enum):
    ACK = "ack"
    NAK = "nak"
    TIMEOUT = "timeout"


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    attempts: int
    error_cause: int | None = None

    @property
    def done(self) -> bool:
        """Final success: an ACK, or a Disconnect whose session is already gone."""
        return self.outcome is Outcome.ACK


def build(code: int, identifier: int, secret: bytes, pairs) -> bytes:
    return wire.encode_request(code, identifier, secret, encode_all(pairs),
                               message_authenticator=True)


def schedule(rng: random.Random, irt: float = IRT_S, mrt: float = MRT_S,
             mrd: float = MRD_S) -> list[float]:
    """Send times (seconds after the first send) of the retransmissions."""
    times, at, interval = [], 0.0, irt * (1 + rng.uniform(-JITTER, JITTER))
    while True:
        at += interval
        if at >= mrd:
            return times
        times.append(at)
        interval = min(2 * interval, mrt) * (1 + rng.uniform(-JITTER, JITTER))


def _reply_valid(reply: bytes, request: bytes, secret: bytes) -> bool:
    if len(reply) < wire.MIN_LENGTH or reply[1] != request[1]:
        return False
    expected = hashlib.md5(reply[:4] + request[4:20] + reply[20:] + secret).digest()
    return hmac.compare_digest(expected, reply[4:20])


def exchange(request: bytes, address: tuple[str, int], secret: bytes, *,
             rng: random.Random | None = None, irt: float = IRT_S, mrt: float = MRT_S,
             mrd: float = MRD_S) -> Result:
    """Send ``request`` until a valid ACK/NAK arrives or MRD passes."""
    rng = rng or random.Random()
    resend_at = schedule(rng, irt, mrt, mrd)
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        started = time.monotonic()
        sock.sendto(request, address)
        attempts = 1
        while True:
            elapsed = time.monotonic() - started
            if elapsed >= mrd:
                return Result(Outcome.TIMEOUT, attempts)
            next_send = resend_at[attempts - 1] if attempts - 1 < len(resend_at) else mrd
            ready, _, _ = select.select([sock], [], [], max(0.0, min(next_send, mrd) - elapsed))
            if ready:
                reply = sock.recv(4096)
                # A reply that fails the authenticator check is not from our
                # NAS (or is damaged): ignore it and keep waiting.
                if not _reply_valid(reply, request, secret):
                    continue
                try:
                    decoded = wire.decode(reply)
                except wire.MalformedPacket:
                    continue
                if decoded.code in (wire.COA_ACK, wire.DISCONNECT_ACK):
                    return Result(Outcome.ACK, attempts)
                if decoded.code in (wire.COA_NAK, wire.DISCONNECT_NAK):
                    cause = decoded.integer(ERROR_CAUSE)
                    if decoded.code == wire.DISCONNECT_NAK and cause == SESSION_CONTEXT_NOT_FOUND:
                        return Result(Outcome.ACK, attempts, cause)
                    return Result(Outcome.NAK, attempts, cause)
                continue
            if time.monotonic() - started < mrd and attempts - 1 < len(resend_at):
                sock.sendto(request, address)  # byte-identical retransmit
                attempts += 1
