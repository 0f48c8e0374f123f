"""A broadcast to N subscribers (default 100,000) on PostgreSQL: the time
to queue it, then the rate it is sent at to a loopback SMSC.

    python bench/notify_broadcast.py [--subscribers N] [--rate 200] [--send 3000] [--url postgresql+psycopg://postgres@127.0.0.1:5432/postgres]

Creates a scratch database with N active accounts that take SMS (half in
Russian, half in English), queues the "outage" broadcast with
rating.notify.broadcast (one INSERT … SELECT a channel) and prints the time
(the issue's bound: 10 s for 100,000). Then the delivery run sends the first
--send messages through rating.notify_channels.SmppChannel to the test SMSC
of tests/fake_smsc.py (in a process of its own) with the SMSC's rate set to --rate submits a second,
and prints the rate achieved (it must not exceed --rate) and the receipts.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, select, text  # noqa: E402

from bench.scratch import DEFAULT_URL, scratch_database  # noqa: E402
from config.db import make_sessionmaker  # noqa: E402
from rating import notify  # noqa: E402
from rating.models import Account, Notification  # noqa: E402
from rating.notify_channels import SmppChannel  # noqa: E402

SMSC_PROCESS = ("import time; from tests.fake_smsc import FakeSmsc; smsc = FakeSmsc(); "
                "print(smsc.port, flush=True); time.sleep(10 ** 6)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=200.0,
                        help="The SMSC's configured rate: submit_sm a second.")
    parser.add_argument("--send", type=int, default=3000,
                        help="How many of the queued messages to send (all: --send 0).")
    parser.add_argument("--url", default=DEFAULT_URL)
    args = parser.parse_args()
    with scratch_database(args.url) as (engine, url):
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO accounts (number, kind, name, state, credit_limit, balance, "
                "profile, created_at, version, phone, notify_channels, language) "
                "SELECT lpad(g::text, 9, '0'), 'person', 'Bench ' || g, 'active', 0, 100, "
                "'normal', now(), 1, '+7900' || lpad(g::text, 7, '0'), '[\"sms\"]', "
                "CASE WHEN g % 2 = 0 THEN 'en' ELSE 'ru' END "
                "FROM generate_series(1, :n) g"), {"n": args.subscribers})
        with engine.connect() as conn:
            conn.execute(text("ANALYZE"))
            conn.commit()
        Session = make_sessionmaker(engine)
        started = time.perf_counter()
        with Session() as session:
            row = notify.broadcast(session, select(Account.id), actor="bench", target="all",
                                   template="outage")
            session.commit()
            queued = row.queued
        queue_seconds = time.perf_counter() - started
        print(f"queued {queued:,} messages in {queue_seconds:.2f} s "
              f"({'within' if queue_seconds <= 10 else 'OVER'} the 10 s bound)")
        with engine.connect() as conn:
            conn.execute(text("ANALYZE notifications"))
            conn.commit()

        # The SMSC in a process of its own: it does not share our GIL.
        smsc = subprocess.Popen(
            [sys.executable, "-c", SMSC_PROCESS], stdout=subprocess.PIPE, text=True,
            cwd=str(Path(__file__).resolve().parent.parent))
        port = int(smsc.stdout.readline())
        channel = SmppChannel("127.0.0.1", port, "abonent", "s3cret", rate=args.rate)
        try:
            started = time.perf_counter()
            stats = notify.deliver(Session, {"sms": channel},
                                   max_rows=args.send or None, limit=500)
            send_seconds = time.perf_counter() - started
            receipts = stats.receipts + notify.collect_receipts(Session, {"sms": channel},
                                                                wait=1.0)
        finally:
            channel.close()
            smsc.terminate()
            smsc.wait()
        with Session() as session:
            delivered = session.scalar(select(func.count()).select_from(Notification).where(
                Notification.status == "delivered"))
        print(f"sent {stats.sent:,} messages ({channel.submitted:,} submit_sm) in "
              f"{send_seconds:.2f} s: {channel.submitted / send_seconds:.0f} submit_sm/s "
              f"at a configured rate of {args.rate:g}/s; {receipts:,} receipts, "
              f"{delivered:,} delivered")


if __name__ == "__main__":
    main()
