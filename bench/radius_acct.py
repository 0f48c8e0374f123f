"""Accounting-Requests per second committed to PostgreSQL.

    python bench/radius_acct.py [--requests 100000] [--sessions 5000] [--window 1024]
                                [--seconds 60] [--workers 0] [--new-sessions]
                                [--url postgresql+psycopg://postgres@127.0.0.1/postgres]

Seeds a scratch database, runs the RADIUS server in a child process, and
sends Start then Interim-Updates (18 attributes) round-robin over ``--sessions`` sessions
from this process over loopback, at most ``--window`` unanswered at a time.
A reply is only sent after the batch holding the request committed, so
answered/s is committed/s. Prints req/s, p50/p99 latency and a check that
the stored counters equal what was sent.

``--new-sessions``: every request is an Interim-Update of a session not yet
known, with its own Acct-Session-Id and Framed-IP-Address (a BRAS after a
reboot; bench.radius_packets.new_sessions), for ``--sessions`` subscribers;
each stores a session and opens a lease.
"""

from __future__ import annotations

import argparse
import hashlib
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, text  # noqa: E402

from bench.radius_common import (DEFAULT_URL, SECRET, load, report,  # noqa: E402
                                 scratch_database, server_process)
from bench.radius_packets import new_sessions  # noqa: E402

_ZERO16 = bytes(16)


def _attr(kind: int, value: bytes) -> bytes:
    return bytes((kind, len(value) + 2)) + value


def _int(kind: int, value: int) -> bytes:
    return bytes((kind, 6)) + struct.pack("!I", value)


def builder(sessions: int):
    """Start, then Interim-Updates: 18 attributes each, as a MikroTik or
    accel-ppp BRAS sends them (MikroTik adds gigawords and Event-Timestamp;
    those change nothing here)."""
    fixed = [_attr(1, f"user{n % sessions + 1}".encode())            # User-Name
             + _attr(44, f"bench-{n:08d}".encode())                   # Acct-Session-Id
             + _attr(4, bytes((127, 0, 0, 1)))                        # NAS-IP-Address
             + _int(5, 15728640 + n)                                  # NAS-Port
             + _int(61, 15)                                           # NAS-Port-Type Ethernet
             + _int(6, 2) + _int(7, 1)                                # Framed service, PPP
             + _attr(8, bytes((10, n >> 16 & 255, n >> 8 & 255, n & 255)))  # Framed-IP
             + _attr(31, f"02:00:{n >> 24 & 255:02X}:{n >> 16 & 255:02X}:"
                         f"{n >> 8 & 255:02X}:{n & 255:02X}".encode())   # Calling-Station-Id
             + _attr(30, b"bras-bench")                               # Called-Station-Id
             + _attr(32, b"bras-bench-1")                             # NAS-Identifier
             for n in range(sessions)]

    def build(number: int, identifier: int) -> bytes:
        session = number % sessions
        round_ = number // sessions
        status = 1 if round_ == 0 else 3
        body = (fixed[session] + _int(40, status) + _int(41, 0)
                + _int(46, round_ * 60)
                + _int(42, round_ * 1000) + _int(43, round_ * 5000)
                + _int(47, round_ * 10) + _int(48, round_ * 50))
        head = struct.pack("!BBH", 4, identifier, 20 + len(body))
        return head + hashlib.md5(head + _ZERO16 + body + SECRET).digest() + body
    return build


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--sessions", type=int, default=5_000)
    parser.add_argument("--window", type=int, default=1024)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--workers", type=int, default=0,
                        help="server processes (0: one per CPU, as abonent serve radius)")
    parser.add_argument("--generator", choices=("c", "python"), default="c",
                        help="load generator: bench/udpload.c (default) or Python")
    parser.add_argument("--new-sessions", action="store_true",
                        help="every request an Interim-Update of a session not yet known")
    parser.add_argument("--url", default=DEFAULT_URL)
    args = parser.parse_args()
    if args.new_sessions:
        requests = new_sessions(args.requests, args.sessions)
    else:
        build = builder(args.sessions)
        requests = [build(n, n & 0xFF) for n in range(args.requests)]
    with scratch_database(args.url, args.sessions) as url:
        with server_process(url, args.workers) as (_auth_port, acct_port, stats):
            result = load(requests, acct_port, window=args.window, seconds=args.seconds,
                          generator=args.generator)
        engine = create_engine(url)
        with engine.connect() as conn:
            rows, octets_in = conn.execute(text(
                "SELECT count(*), coalesce(sum(octets_in), 0) FROM sessions")).one()
            leases = conn.execute(text(
                "SELECT count(*) FROM ip_leases WHERE open_address IS NOT NULL")).scalar()
        engine.dispose()
    report("accounting committed", result, args.window, stats)
    if args.new_sessions:
        print(f"stored: {rows:,} sessions, {leases:,} open leases "
              f"(answered {result.answered:,})")
        return
    # Interim n of a session carries n * 1000 input octets; sent in order.
    sent = min(args.requests, result.answered + result.lost)
    rounds = [n // args.sessions for n in range(max(0, sent - args.sessions), sent)]
    print(f"stored: {rows:,} sessions, octets_in total {int(octets_in):,} "
          f"(upper bound sent {sum(r * 1000 for r in rounds):,})")

if __name__ == "__main__":
    main()
