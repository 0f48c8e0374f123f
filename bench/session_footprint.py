"""What accounting costs the database in bytes: the figures behind the disk
and WAL arithmetic of docs/scaling.md.

    python bench/session_footprint.py [--sessions 20000] [--interims 3]
        [--url postgresql+psycopg://postgres@127.0.0.1:5432/postgres]

In a scratch PostgreSQL database: N sessions opened by
Accounting Start (with a Framed-IP-Address: a lease each) through the
writer's own batch path (aaa.accounting.apply_batch, 200 records a
transaction), then K rounds of Interim-Update for every session, then a
Stop each. Prints the table and index bytes per session and per lease, and
the WAL written per Start, per Interim and per Stop (pg_current_wal_lsn
before and after each phase): what a standby receives and an archive keeps.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text  # noqa: E402

from aaa import accounting  # noqa: E402
from bench.scratch import DEFAULT_URL, scratch_database  # noqa: E402

BATCH = 200


def _wal(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(text(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint")).scalar()


def _size(engine, table: str) -> tuple[int, int]:
    with engine.connect() as connection:
        return connection.execute(text(
            "SELECT pg_table_size(CAST(:t AS regclass)), pg_indexes_size(CAST(:t AS regclass))"),
            {"t": table}).one()


def _write(engine, records) -> float:
    started = time.process_time()
    for start in range(0, len(records), BATCH):
        with engine.begin() as connection:
            accounting.apply_batch(connection, records[start:start + BATCH])
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20_000)
    parser.add_argument("--interims", type=int, default=3)
    parser.add_argument("--url", default=DEFAULT_URL)
    args = parser.parse_args()
    if args.sessions < 1 or args.interims < 1:
        parser.error("--sessions and --interims must be 1 or more")
    n = args.sessions
    with scratch_database(args.url, prefix="abonent_footprint") as (engine, _url):
        # sessions and ip_leases carry no foreign keys (migration
        # a1800000f001): ids stand for the NAS and the accounts.
        ids, nas_id = range(1, n + 1), 1
        now = dt.datetime(2026, 1, 1)

        def records(status, step):
            return [accounting.AcctRecord(
                nas_id=nas_id, status=status, event_time=now + dt.timedelta(seconds=300 * step),
                acct_session_id=f"s{i}", username=f"u{i}",
                framed_ip=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
                octets_in=step * 1_000_000 + i, octets_out=step * 9_000_000 + i,
                packets_in=step * 1000, packets_out=step * 9000, session_time=300 * step,
                terminate_cause="User-Request" if status == accounting.STOP else None,
                account_id=account_id, saw_start=status == accounting.START)
                for i, account_id in enumerate(ids)]

        phases = []
        before = _wal(engine)
        cpu = _write(engine, records(accounting.START, 0))
        phases.append(("Start", _wal(engine) - before, cpu, n))
        sessions, leases = _size(engine, "sessions"), _size(engine, "ip_leases")
        before = _wal(engine)
        cpu = 0.0
        for step in range(1, args.interims + 1):
            cpu += _write(engine, records(accounting.INTERIM, step))
        phases.append(("Interim", _wal(engine) - before, cpu, n * args.interims))
        before = _wal(engine)
        cpu = _write(engine, records(accounting.STOP, args.interims + 1))
        phases.append(("Stop", _wal(engine) - before, cpu, n))
        after_sessions = _size(engine, "sessions")
    print(f"{n} sessions, {args.interims} interim rounds, batches of {BATCH}")
    print(f"sessions after Start: {sessions[0] / n:.0f} B table + {sessions[1] / n:.0f} B "
          f"indexes per session; after the interims and Stop: {after_sessions[0] / n:.0f} B + "
          f"{after_sessions[1] / n:.0f} B (dead versions until VACUUM)")
    print(f"ip_leases: {leases[0] / n:.0f} B table + {leases[1] / n:.0f} B indexes per lease")
    for name, wal, cpu, count in phases:
        print(f"WAL per {name}: {wal / count:.0f} B   (client CPU {cpu / count * 1e6:.0f} us "
              f"per record)")


if __name__ == "__main__":
    main()
