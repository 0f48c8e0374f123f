"""Calls per second a voice NAS's accounting is stored and rated at (PostgreSQL).

    python bench/voice_acct.py [--calls 20000] [--callers 2000] [--window 256]
                               [--seconds 60] [--workers 1]
                               [--url postgresql+psycopg://postgres@127.0.0.1/postgres]

Seeds a scratch database with ``--callers`` phone numbers on one plan and
the loopback NAS as a voice NAS (vendor ``sip``), runs the RADIUS server in
a child process, and sends each call as Kamailio's acc_radius does: a Start
(200 OK) and later a Stop (BYE), Call-ID as Acct-Session-Id, the numbers in
Calling-/Called-Station-Id, Event-Timestamp as "seconds.microseconds". The
Starts of a block of calls go before their Stops. A reply is only sent
after the batch holding the request committed, so answered/s is stored/s;
calls/s is half of it. Prints the figures and a check that every call was
stored once and rated to the expected total.

One server process by default: with several, a Stop may reach another
process before its Start committed and be stored from the Stop alone (see
docs/telephony-sip.md).
"""

from __future__ import annotations

import argparse
import hashlib
import struct
import sys
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, insert, select, text, update  # noqa: E402

from aaa.models import Nas  # noqa: E402
from bench.radius_common import (DEFAULT_URL, SECRET, load, report,  # noqa: E402
                                 scratch_database, server_process)
from rating.models import Account, VoicePlan, VoiceRate, VoiceService  # noqa: E402

_ZERO16 = bytes(16)
T0 = 1796558400.0
PRICE = Decimal("1.80")     # a minute, per-second billing


def _attr(kind: int, value: bytes) -> bytes:
    return bytes((kind, len(value) + 2)) + value


def _int(kind: int, value: int) -> bytes:
    return bytes((kind, 6)) + struct.pack("!I", value)


def seconds_of(call: int) -> int:
    return 5 + call % 115


def requests_for(calls: int, callers: int, block: int) -> list[bytes]:
    """Start and Stop of every call; Starts of a block first, then its Stops."""
    out = []
    for first in range(0, calls, block):
        numbers = range(first, min(calls, first + block))
        for status in (1, 2):
            for call in numbers:
                stamp = T0 + call * 0.01 + (seconds_of(call) if status == 2 else 0)
                body = (_int(40, status) + _int(6, 15) + _int(102, 200)
                        + _int(101, 1 if status == 1 else 8)
                        + _attr(55, f"{stamp:.6f}".encode())
                        + _attr(44, f"bench-{call:08d}@proxy".encode())
                        + _attr(31, f"7495{call % callers:07d}".encode())
                        + _attr(30, f"7916{call:07d}".encode())
                        + _attr(4, bytes((127, 0, 0, 1))) + _int(41, 0))
                identifier = len(out) & 0xFF
                head = struct.pack("!BBH", 4, identifier, 20 + len(body))
                out.append(head + hashlib.md5(head + _ZERO16 + body + SECRET).digest() + body)
    return out


def seed_voice(url: str, callers: int) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(update(Nas).values(vendor="sip"))
        plan_id = conn.execute(insert(VoicePlan).returning(VoicePlan.id), dict(
            name="Bench", free_seconds=0)).scalar_one()
        conn.execute(insert(VoiceRate), dict(plan_id=plan_id, prefix="7916", zone="Mobile",
                                             price_per_minute=PRICE, first_increment_s=1,
                                             next_increment_s=1))
        ids = conn.execute(select(Account.id).order_by(Account.id).limit(callers)).scalars().all()
        conn.execute(insert(VoiceService), [
            dict(account_id=account_id, number=f"7495{n:07d}", plan_id=plan_id)
            for n, account_id in enumerate(ids)])
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--callers", type=int, default=2_000)
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--generator", choices=("c", "python"), default="c")
    parser.add_argument("--url", default=DEFAULT_URL)
    args = parser.parse_args()
    requests = requests_for(args.calls, args.callers, block=max(args.window * 2, 512))
    with scratch_database(args.url, args.callers) as url:
        seed_voice(url, args.callers)
        with server_process(url, args.workers) as (_auth_port, acct_port, stats):
            result = load(requests, acct_port, window=args.window, seconds=args.seconds,
                          generator=args.generator)
        engine = create_engine(url)
        with engine.connect() as conn:
            stored, billsec, charged = conn.execute(text(
                "SELECT count(*), coalesce(sum(billsec), 0), coalesce(sum(charge), 0) "
                "FROM calls")).one()
            held = conn.execute(text("SELECT count(*) FROM voice_starts")).scalar()
        engine.dispose()
    report("voice accounting committed", result, args.window, stats)
    print(f"calls: {result.answered / 2 / result.elapsed_s:,.0f} calls/s "
          f"(a Start and a Stop each)")
    done = args.calls if result.answered == len(requests) else None
    expected = ""
    if done is not None:
        seconds = sum(seconds_of(c) for c in range(done))
        money = sum((PRICE * seconds_of(c) / 60).quantize(Decimal("0.01"))
                    for c in range(done))
        expected = f" (expected {done:,} calls, {seconds:,} s, {money} RUB)"
    print(f"stored: {stored:,} calls, {int(billsec):,} s, {charged} RUB charged, "
          f"{held:,} Starts still held{expected}")


if __name__ == "__main__":
    main()
