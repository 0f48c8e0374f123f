"""Accounting-Requests per second committed to PostgreSQL for a realistic
mix, with a million sessions open.

    python bench/radius_mix.py [--open-sessions 1000000] [--subscribers 100000]
                               [--requests 400000] [--window 256] [--seconds 20]
                               [--workers 0]
                               [--url postgresql+psycopg://postgres@127.0.0.1/postgres]

The database holds ``--open-sessions`` open sessions of the bench NAS, each
with its open lease, bulk-loaded in one set-based statement each (not
through the server). Then the server gets, in blocks of 1,000 unique
packets, what a BRAS fleet with a 5-minute interim interval sends while one
BRAS reboots (``MIX``): Interim-Updates of open sessions (a tenth of them
past 4 GiB, so with Acct-Input/Output-Gigawords), Stops of open sessions,
Starts of new ones, and a burst of Starts of new sessions (the reboot
storm: the rebooted BRAS's subscribers dialling in again). Every packet is
unique (each Interim is of another session, with its counters).

Accounting-On itself is not in the mix: with one NAS entry for the whole
loopback fleet it would close the million sessions; tests/integration/
test_radius_accounting_storm.py covers it.

Prints req/s committed, p50/p99 and the stored counts.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, text  # noqa: E402

from bench.radius_common import (DEFAULT_URL, load, report, scratch_database,  # noqa: E402
                                 server_process)
from bench.radius_packets import INTERIM, START, STOP, GIGAWORD, accounting  # noqa: E402

# Of every 1,000 packets. With a 5-minute interim interval and sessions of
# about 8 hours, a BRAS sends ~96 Interims per Start and per Stop; a
# reboot storm on top brings a burst of Starts.
MIX = dict(interim=880, stop=10, start=10, storm=100)
GIGAWORDS_EVERY = 10        # one Interim or Stop in 10 is past 4 GiB
NAS_PORT_BASE = 15728640    # bench.radius_packets.accounting's NAS-Port


def load_open_sessions(url: str, count: int, subscribers: int) -> None:
    """``count`` open sessions of NAS 1 (session n: bench.radius_packets'
    Acct-Session-Id, Framed-IP-Address of number n, owner user{n %
    subscribers + 1}) and their open leases, set-based."""
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO sessions (nas_id, acct_session_id, username, account_id, service_id, "
            "framed_ip, started_at, updated_at, octets_in, octets_out, packets_in, packets_out, "
            "session_time) "
            "SELECT 1, 'bench-' || lpad(n::text, 8, '0'), 'user' || (n % :subs + 1), "
            "n % :subs + 1, n % :subs + 1, "
            "'10.' || (n >> 16 & 255) || '.' || (n >> 8 & 255) || '.' || (n & 255), "
            "now() at time zone 'utc' - interval '1 hour', "
            "now() at time zone 'utc' - interval '2 minutes', 1000, 5000, 10, 50, 3480 "
            "FROM generate_series(0, :count - 1) AS n"), dict(count=count, subs=subscribers))
        conn.execute(text(
            "INSERT INTO ip_leases (account_id, address, valid_from, open_address, session_id) "
            "SELECT account_id, framed_ip, started_at, framed_ip, id FROM sessions"))
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(text("VACUUM ANALYZE sessions"))
        conn.execute(text("VACUUM ANALYZE ip_leases"))
    engine.dispose()


def load_open_radacct(url: str, count: int, subscribers: int) -> None:
    """The same open sessions in FreeRADIUS's radacct, with the
    Acct-Unique-Session-Id its acct_unique policy computes for them."""
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO radacct (acctsessionid, acctuniqueid, username, nasipaddress, "
            "nasporttype, acctstarttime, acctupdatetime, acctsessiontime, acctinputoctets, "
            "acctoutputoctets, calledstationid, callingstationid, servicetype, framedprotocol, "
            "framedipaddress) "
            "SELECT sid, md5(u || ',' || sid || ',127.0.0.1,bras-bench-1,,' || (:port + n)), u, "
            "'127.0.0.1', 'Ethernet', now() - interval '1 hour', now() - interval '2 minutes', "
            "3480, 1000, 5000, 'bras-bench', '', 'Framed-User', 'PPP', "
            "('10.' || (n >> 16 & 255) || '.' || (n >> 8 & 255) || '.' || (n & 255))::inet "
            "FROM (SELECT n, 'bench-' || lpad(n::text, 8, '0') AS sid, "
            "'user' || (n % :subs + 1) AS u FROM generate_series(0, :count - 1) AS n) AS g"),
            dict(count=count, subs=subscribers, port=NAS_PORT_BASE))
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(text("VACUUM ANALYZE radacct"))
    engine.dispose()


class Mix:
    """Unique mix packets over ``open_sessions`` open sessions; ``take(n)``
    gives the next n (a later call never repeats one)."""

    def __init__(self, open_sessions: int, subscribers: int):
        self.open_sessions = open_sessions
        self.subscribers = subscribers
        self.interims = 0                   # next open session to send an Interim of
        self.stops = 0                      # open sessions stopped, from the top
        self.next_new = open_sessions       # next session number never seen
        self.sent = 0
        self.kinds = dict.fromkeys(MIX, 0)

    def _kind(self, position: int) -> str:
        at = position % 1000
        if at < MIX["storm"]:               # the burst opens each block
            return "storm"
        at -= MIX["storm"]
        # Stops and Starts spread evenly through the rest of the block.
        spread = 1000 - MIX["storm"]
        if at % (spread // MIX["stop"]) == 0:
            return "stop"
        if at % (spread // MIX["start"]) == 1:
            return "start"
        return "interim"

    def _packet(self, identifier: int, kind: str) -> bytes:
        subs = self.subscribers
        if kind in ("start", "storm"):
            number = self.next_new
            self.next_new += 1
            return accounting(identifier, START, number, f"user{number % subs + 1}")
        if kind == "stop":
            self.stops += 1
            number = self.open_sessions - self.stops
            rounds, cause = 13, 1           # User-Request
        else:
            # Each Interim of another open session, each later pass of the
            # sessions with larger counters (unique packets).
            number = self.interims % (self.open_sessions - self.stops - 1)
            rounds, cause = 13 + self.interims // self.open_sessions, None
            self.interims += 1
        big = number % GIGAWORDS_EVERY == 0
        octets_in = rounds * 1_000_000 + (5 * GIGAWORD if big else 0)
        return accounting(identifier, STOP if kind == "stop" else INTERIM, number,
                          f"user{number % subs + 1}", session_time=rounds * 300,
                          octets_in=octets_in, octets_out=octets_in * 4, cause=cause)

    def take(self, count: int) -> list[bytes]:
        packets = []
        for index in range(count):
            kind = self._kind(self.sent)
            self.kinds[kind] += 1
            packets.append(self._packet(index, kind))
            self.sent += 1
        return packets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--open-sessions", type=int, default=1_000_000)
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=400_000)
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--workers", type=int, default=0,
                        help="server processes (0: one per CPU, as abonent serve radius)")
    parser.add_argument("--url", default=DEFAULT_URL)
    args = parser.parse_args()
    mix = Mix(args.open_sessions, args.subscribers)
    requests = mix.take(args.requests)
    with scratch_database(args.url, args.subscribers) as url:
        load_open_sessions(url, args.open_sessions, args.subscribers)
        with server_process(url, args.workers) as (_auth_port, acct_port, stats):
            result = load(requests, acct_port, window=args.window, seconds=args.seconds)
        engine = create_engine(url)
        with engine.connect() as conn:
            rows, open_rows, leases = conn.execute(text(
                "SELECT count(*), count(*) FILTER (WHERE stopped_at IS NULL), "
                "(SELECT count(*) FROM ip_leases WHERE open_address IS NOT NULL) "
                "FROM sessions")).one()
        engine.dispose()
    report(f"mix committed ({args.open_sessions:,} open sessions)", result, args.window, stats)
    print(f"mix of the packets built: {mix.kinds}; stored: {rows:,} sessions, "
          f"{open_rows:,} open, {leases:,} open leases")


if __name__ == "__main__":
    main()
