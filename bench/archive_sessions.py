"""Archive N closed sessions on PostgreSQL (default 1,000,000): rows/s and
the hot table's size before and after.

    python bench/archive_sessions.py [--sessions N] [--hot-share 0.25] [--batch 5000]
                                     [--url postgresql+psycopg://postgres@127.0.0.1:5432/postgres]

Creates a scratch database, seeds N sessions with one set-based statement
(``--hot-share`` of them closed within the hot period or still open, the
rest closed 100-400 days ago), a lease per session, then runs the archive
job's sessions and leases steps (aaa.archive.run) and prints rows/s, this
process's CPU seconds, the load average and the sizes. Then runs it again:
nothing is due, and that run's time is the cost of the idle scan.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text  # noqa: E402

from aaa import archive  # noqa: E402
from bench.scratch import scratch_database  # noqa: E402
from config.db import utcnow  # noqa: E402


def _size(conn, table: str) -> int:
    return conn.execute(text("SELECT pg_total_relation_size(:t)"), {"t": table}).scalar()


def _mb(size: int) -> str:
    return f"{size / 2**20:.0f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--hot-share", type=float, default=0.25)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    now = utcnow().replace(microsecond=0)
    with scratch_database(args.url) as (engine, url):
        started = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE sessions SET (autovacuum_enabled = false)"))
            # g % 1000 < hot_share * 1000: fresh (stopped 0-80 days ago, or
            # open every 10th of them); the rest stopped 100-400 days ago.
            conn.execute(text(
                "INSERT INTO sessions (nas_id, acct_session_id, username, account_id, "
                "service_id, framed_ip, calling_station_id, started_at, updated_at, stopped_at, "
                "octets_in, octets_out, packets_in, packets_out, session_time, "
                "terminate_cause, profile) "
                "SELECT (1 + g % 50)::int, 'bench-' || g, 'user' || (g % 200000), "
                "(1 + g % 200000)::int, (1 + g % 200000)::int, "
                "'100.64.' || (g / 250 % 250) || '.' || (g % 250 + 1), "
                "'00:11:22:33:44:55', t - interval '3 hours', t, "
                "CASE WHEN hot AND g % 10 = 0 THEN NULL ELSE t END, "
                "g * 1000, g * 3000, g, g * 2, 10800, 'User-Request', 'normal' "
                "FROM (SELECT g, (g % 1000) < :hot AS hot, "
                "      :now - CASE WHEN (g % 1000) < :hot "
                "                  THEN make_interval(mins => ((g * 7919) % (80 * 1440))::int) "
                "                  ELSE make_interval(days => (100 + g % 300)::int) END AS t "
                "      FROM generate_series(1::bigint, :n) g) s"),
                {"n": args.sessions, "hot": int(args.hot_share * 1000), "now": now})
            conn.execute(text(
                "INSERT INTO ip_leases (account_id, address, valid_from, valid_to, session_id, "
                "open_address) SELECT account_id, framed_ip, started_at, stopped_at, id, "
                "CASE WHEN stopped_at IS NULL THEN 'o' || id END FROM sessions"))
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE sessions"))
            conn.execute(text("VACUUM ANALYZE ip_leases"))
            before = {t: _size(conn, t) for t in ("sessions", "ip_leases")}
            rows_before = conn.execute(text("SELECT count(*) FROM sessions")).scalar()
        print(f"seeded {args.sessions:,} sessions and leases in "
              f"{time.perf_counter() - started:.1f} s")

        retention = archive.Retention(batch_rows=args.batch, run_seconds=24 * 3600)
        cpu = time.process_time()
        started = time.perf_counter()
        result = archive.run(engine, retention, now, steps=("sessions",))
        sessions_s = time.perf_counter() - started
        leases_started = time.perf_counter()
        leases = archive.run(engine, retention, now, steps=("leases",))
        leases_s = time.perf_counter() - leases_started
        cpu = time.process_time() - cpu
        load = os.getloadavg()

        started = time.perf_counter()
        idle = archive.run(engine, retention, now, steps=("sessions", "leases"))
        idle_s = time.perf_counter() - started

        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            rows_after = conn.execute(text("SELECT count(*) FROM sessions")).scalar()
            conn.execute(text("VACUUM sessions"))
            after_vacuum = _size(conn, "sessions")
            conn.execute(text("VACUUM FULL sessions"))
            after_full = _size(conn, "sessions")
            archived = _size(conn, "sessions_archive")

    moved = result.rows["sessions"]
    print(f"sessions moved: {moved:,} in {sessions_s:.1f} s = {moved / sessions_s:,.0f} rows/s "
          f"({result.batches} batches of {args.batch})")
    print(f"leases moved:   {leases.rows['leases']:,} in {leases_s:.1f} s = "
          f"{leases.rows['leases'] / leases_s:,.0f} rows/s")
    print(f"this process's CPU: {cpu:.1f} s; load average {load[0]:.2f} {load[1]:.2f} "
          f"{load[2]:.2f}")
    print(f"re-run with nothing due: {idle_s:.2f} s, {sum(idle.rows.values())} rows")
    print(f"sessions rows: {rows_before:,} -> {rows_after:,}")
    print(f"sessions size: {_mb(before['sessions'])} before; {_mb(after_vacuum)} after the run "
          f"and VACUUM (free space reused by new rows); {_mb(after_full)} after VACUUM FULL; "
          f"sessions_archive {_mb(archived)}")


if __name__ == "__main__":
    main()
