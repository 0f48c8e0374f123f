"""Ledger under concurrency on PostgreSQL: real connections, real races."""

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

from sqlalchemy import func, select, text

from rating import ledger
from rating.models import LedgerEntry
from tests.conftest import make_context
from tests.factories import make_account

WORKERS = 8


def _run_workers(context, jobs, work):
    chunks = [jobs[i::WORKERS] for i in range(WORKERS)]
    barrier = threading.Barrier(WORKERS)

    def worker(chunk):
        results = []
        with context.Session() as session:
            # The test is about races, not durability: don't wait for fsync.
            session.execute(text("SET synchronous_commit = off"))
            session.commit()
            barrier.wait()
            for job in chunk:
                results.append(work(session, job))
        return results

    with ThreadPoolExecutor(WORKERS) as pool:
        return [r for rs in pool.map(worker, chunks) for r in rs]


def test_every_posting_submitted_twice_is_counted_once(pg_url):
    context = make_context(pg_url)  # pool: 10 + 20 overflow >= WORKERS
    with context.Session() as session:
        ids = [make_account(session, credit_limit="1000000").id for _ in range(4)]
        session.commit()
    rng = random.Random(7)
    operations = []
    for n in range(10_000):
        amount = Decimal(rng.randint(1, 100_000)) / 100
        kind = "payment" if n % 2 else "fee"
        operations.append((rng.choice(ids), amount if kind == "payment" else -amount, kind,
                           f"op:{n}"))
    submissions = operations + operations
    rng.shuffle(submissions)

    def submit(session, op):
        account_id, amount, kind, key = op
        posting = ledger.post(session, account_id=account_id, amount=amount, kind=kind,
                              key=key, author="test")
        session.commit()
        return posting.created

    created = _run_workers(context, submissions, submit)
    assert sum(created) == 10_000
    with context.Session() as session:
        assert session.scalar(select(func.count()).select_from(LedgerEntry)) == 10_000
        assert ledger.balance_mismatches(session) == []
        for account_id in ids:
            expected = sum(a for acc, a, _, _ in operations if acc == account_id)
            total = session.scalar(select(func.sum(LedgerEntry.amount))
                                   .where(LedgerEntry.account_id == account_id))
            assert total == expected
    context.dispose()


def test_guarded_charges_never_pass_the_limit(pg_url):
    context = make_context(pg_url)
    with context.Session() as session:
        ids = [make_account(session, balance="100").id for _ in range(4)]
        session.commit()
    charges = [(ids[n % 4], f"charge:{n}") for n in range(2_000)]
    random.Random(3).shuffle(charges)

    def charge(session, job):
        account_id, key = job
        try:
            ledger.post(session, account_id=account_id, amount="-10", kind="option", key=key,
                        author="test", guarded=True)
            session.commit()
            return True
        except ledger.InsufficientFunds:
            session.rollback()
            return False

    accepted = _run_workers(context, charges, charge)
    assert sum(accepted) == 40
    with context.Session() as session:
        assert ledger.balance_mismatches(session) == []
        from rating.models import Account
        balances = session.scalars(select(Account.balance).where(Account.id.in_(ids))).all()
        assert balances == [Decimal("0.00")] * 4
    context.dispose()
