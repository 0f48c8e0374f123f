"""abonent and FreeRADIUS 3.2 side by side: same box, same generator, same
packets, alternating; prints each figure and the ratios.

    python bench/radius_vs_freeradius.py [--seconds 4] [--rounds 3] [--windows 64,256]
                                         [--subscribers 5000] [--mix-sessions 1000000]
                                         [--auth-window 64] [--workers 0] [--echo]
                                         [--url postgresql+psycopg://postgres@127.0.0.1/postgres]

Points, each ``--seconds`` long, each round in turn abonent then the peers:

- new-session accounting at each of ``--windows``: Interim-Updates of
  sessions not yet known, each with its own Acct-Session-Id and
  Framed-IP-Address (bench.radius_packets.new_sessions); abonent (its
  server processes, PostgreSQL) vs FreeRADIUS + rlm_sql PostgreSQL (its
  stock schema and queries: UPDATE, then INSERT) vs FreeRADIUS -> detail
  file;
- the realistic mix (bench.radius_mix) with ``--mix-sessions`` sessions open
  in both databases (0: skipped), abonent vs FreeRADIUS + rlm_sql;
- Access-Request, PAP with Message-Authenticator (bench.radius_auth) at
  ``--auth-window``, abonent vs FreeRADIUS with rlm_files;
- with ``--echo``, the same Access-Requests answered by a bare Python
  recvfrom/sendto loop in as many processes as abonent's
  (bench.radius_common.echo_process): no RADIUS work at all, the ceiling
  of any server whose receive loop is Python on this box.

Each point gets packets no one has seen (new session numbers, new
authenticators); the two peers get the same bytes. The figure of a point is
the median over the rounds; a reply is sent by abonent only once the batch
holding the request committed, by rlm_sql once its query returned.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, text  # noqa: E402

from bench.radius_auth import builder as auth_builder  # noqa: E402
from bench.radius_common import (DEFAULT_URL, echo_process, load,  # noqa: E402
                                 scratch_database, server_process)
from bench.radius_freeradius import freeradius  # noqa: E402
from bench.radius_mix import Mix, load_open_radacct, load_open_sessions  # noqa: E402
from bench.radius_packets import new_sessions, session_id  # noqa: E402

# Packets built per point and second: more than any target answers, so a
# point runs its --seconds (accounting: 16k; Access-Requests, which the
# cached-Accept path and FreeRADIUS's files answer faster: 100k).
PACKETS_PER_S = 16_000
AUTH_PACKETS_PER_S = 100_000


def _count(url: str, query: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(query)).scalar()
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--windows", default="64,256")
    parser.add_argument("--subscribers", type=int, default=5_000)
    parser.add_argument("--mix-sessions", type=int, default=1_000_000)
    parser.add_argument("--auth-window", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0,
                        help="abonent server processes (0: one per CPU)")
    parser.add_argument("--echo", action="store_true",
                        help="also a bare Python UDP echo loop on the auth packets")
    parser.add_argument("--url", default=DEFAULT_URL)
    args = parser.parse_args()
    windows = [int(w) for w in args.windows.split(",")]
    per_point = int(PACKETS_PER_S * args.seconds)
    auth_per_point = int(AUTH_PACKETS_PER_S * args.seconds)
    results: dict[tuple[str, str], list] = {}
    # Answered new-session requests: each must be a stored session.
    answered_new = {"abonent": 0, "sql": 0, "detail": 0}

    def run(point: str, target: str, packets: list[bytes], port: int, window: int) -> None:
        result = load(packets, port, window=window, seconds=args.seconds)
        results.setdefault((point, target), []).append(result)
        if point.startswith("new sessions"):
            answered_new[target] += result.answered
        print(f"  {point:<22} {target:<8} {result.answered / result.elapsed_s:>9,.0f} req/s  "
              f"p50 {result.p50_s * 1000:6.2f} ms  p99 {result.p99_s * 1000:7.2f} ms  "
              f"lost {result.lost}", flush=True)

    with scratch_database(args.url, args.subscribers) as url, \
            freeradius(args.url, args.subscribers) as peer, \
            (echo_process(args.workers) if args.echo else nullcontext()) as echo_port:
        if args.mix_sessions:
            print(f"bulk-loading {args.mix_sessions:,} open sessions into both databases ...",
                  flush=True)
            load_open_sessions(url, args.mix_sessions, args.subscribers)
            load_open_radacct(peer.url, args.mix_sessions, args.subscribers)
        mix = Mix(args.mix_sessions, args.subscribers) if args.mix_sessions else None
        # New sessions get numbers past the mix's open ones and its new ones.
        first = new_base = max(args.mix_sessions, 0) * 2 + 1_000_000
        build_auth = auth_builder(args.subscribers)
        auth_number = 0
        with server_process(url, args.workers) as (auth_port, acct_port, stats):
            for round_ in range(args.rounds):
                print(f"round {round_ + 1} of {args.rounds}", flush=True)
                for window in windows:
                    point = f"new sessions w{window}"
                    for target, port in (("abonent", acct_port), ("sql", peer.acct_sql_port),
                                         ("detail", peer.acct_detail_port)):
                        packets = new_sessions(per_point, args.subscribers, first=first)
                        first += per_point
                        run(point, target, packets, port, window)
                if mix is not None:
                    # The same packets to both: each peer's copy of the
                    # million sessions sees them once.
                    packets = mix.take(per_point * 2)
                    run("mix w256", "abonent", packets, acct_port, 256)
                    run("mix w256", "sql", packets, peer.acct_sql_port, 256)
                auth_targets = [("abonent", auth_port), ("files", peer.auth_port)]
                if echo_port is not None:
                    auth_targets.append(("echo", echo_port))
                for target, port in auth_targets:
                    packets = [build_auth(n, n & 0xFF)
                               for n in range(auth_number, auth_number + auth_per_point)]
                    auth_number += auth_per_point
                    run(f"auth PAP w{args.auth_window}", target, packets, port,
                        args.auth_window)
        # New-session points use session numbers from new_base on.
        since = session_id(new_base)
        stored = _count(url, "SELECT count(*) FROM sessions "
                             f"WHERE acct_session_id >= '{since}'")
        radacct = _count(peer.url, "SELECT count(*) FROM radacct "
                                   f"WHERE acctsessionid >= '{since}'")
    if stats.get("auth_reject"):
        raise SystemExit("abonent rejected an Access-Request")

    def median(point: str, target: str, what: str) -> float:
        runs = results[(point, target)]
        if what == "rate":
            return statistics.median(r.answered / r.elapsed_s for r in runs)
        return statistics.median(r.p99_s for r in runs) * 1000

    print(f"\nmedians over {args.rounds} rounds of {args.seconds:g} s "
          f"(abonent: {stats.get('workers')} processes)")
    print(f"{'point':<22} {'abonent':>14} {'peer':>22} {'ratio':>7}  "
          f"{'abonent p99':>11} {'peer p99':>9}")
    points = [(f"new sessions w{w}", peer_name) for w in windows
              for peer_name in ("sql", "detail")]
    if mix is not None:
        points.append(("mix w256", "sql"))
    points.append((f"auth PAP w{args.auth_window}", "files"))
    labels = {"sql": "FreeRADIUS+rlm_sql", "detail": "FreeRADIUS->detail",
              "files": "FreeRADIUS files"}
    for point, peer_name in points:
        ours, theirs = median(point, "abonent", "rate"), median(point, peer_name, "rate")
        print(f"{point:<22} {ours:>8,.0f} req/s {labels[peer_name]:>18} {theirs:>7,.0f} "
              f"{ours / theirs:>6.2f}x  {median(point, 'abonent', 'p99'):>8.1f} ms "
              f"{median(point, peer_name, 'p99'):>6.1f} ms")
    if args.echo:
        point = f"auth PAP w{args.auth_window}"
        echo, files = median(point, "echo", "rate"), median(point, "files", "rate")
        print(f"{point:<22} bare Python echo loop {echo:>8,.0f} req/s = {echo / files:.2f}x "
              f"FreeRADIUS files, p99 {median(point, 'echo', 'p99'):.1f} ms: the ceiling of a "
              "Python receive loop here")
    print(f"new-session points: abonent answered {answered_new['abonent']:,}, stored "
          f"{stored:,} sessions; FreeRADIUS+rlm_sql answered {answered_new['sql']:,}, "
          f"radacct {radacct:,} rows; FreeRADIUS->detail answered {answered_new['detail']:,}"
          + (f"; mix packets built: {mix.kinds}" if mix else ""))
    if stored < answered_new["abonent"]:
        raise SystemExit("abonent answered a new-session request it did not store")


if __name__ == "__main__":
    main()
