"""Access-Requests per second (PAP + Message-Authenticator) and p99 latency.

    python bench/radius_auth.py [--requests 100000] [--subscribers 5000] [--window 256]
                                [--seconds 60] [--workers 0] [--url postgresql+psycopg://postgres@127.0.0.1/postgres]

Seeds a scratch PostgreSQL database with ``--subscribers`` PPPoE services,
runs the RADIUS server in a child process and sends Access-Requests for them
round-robin from this process over loopback, at most ``--window`` unanswered
at a time. Every reply must be an Access-Accept. Prints req/s and p50/p99.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aaa import packet as wire  # noqa: E402
from bench.radius_common import (DEFAULT_URL, SECRET, load, report,  # noqa: E402
                                 scratch_database, server_process)


def builder(subscribers: int):
    def build(number: int, identifier: int) -> bytes:
        account = number % subscribers + 1
        authenticator = os.urandom(16)
        body = (wire.attribute(wire.USER_NAME, f"user{account}".encode())
                + wire.attribute(wire.USER_PASSWORD, wire.encrypt_password(
                    f"pw{account}".encode(), SECRET, authenticator))
                + bytes((wire.NAS_PORT_TYPE_ATTRIBUTE, 6)) + struct.pack("!I", 15))
        head = struct.pack("!BBH", wire.ACCESS_REQUEST, identifier, 20 + 18 + len(body))
        mac = hmac.new(SECRET, head + authenticator + bytes((80, 18)) + bytes(16) + body,
                       hashlib.md5).digest()
        return head + authenticator + bytes((80, 18)) + mac + body
    return build


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--subscribers", type=int, default=5_000)
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--workers", type=int, default=0,
                        help="server processes (0: one per CPU, as abonent serve radius)")
    parser.add_argument("--generator", choices=("c", "python"), default="c",
                        help="load generator: bench/udpload.c (default) or Python")
    parser.add_argument("--url", default=DEFAULT_URL)
    args = parser.parse_args()
    build = builder(args.subscribers)
    requests = [build(n, n & 0xFF) for n in range(args.requests)]
    with scratch_database(args.url, args.subscribers) as url:
        with server_process(url, args.workers) as (auth_port, _acct_port, stats):
            result = load(requests, auth_port, window=args.window, seconds=args.seconds,
                          generator=args.generator)
    report("auth answered", result, args.window, stats)
    if stats.get("auth_reject") or stats.get("auth_accept", 0) < result.answered:
        raise SystemExit("not every answer was an Access-Accept")

if __name__ == "__main__":
    main()
