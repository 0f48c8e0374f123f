"""Rights on a branch and the consolidated view for a big company (issue 21).

    python -m bench.org_rights [--accounts 10000] [--departments 10] [--teams 10]
        [--repeat 20] [--url postgresql+psycopg://postgres@127.0.0.1:5432/postgres]

Creates a scratch PostgreSQL database, seeds one company of N accounts in a
3-level tree (departments × teams × employees, accounts spread over the
employees) with a month's fee on every account, a login with rights on one
department and a login with rights on the whole company; then times, as
the median of R runs, what the cabinet asks on each request and page:

- ``rights_on`` (every request of a login with grants),
- ``accounts_with_right`` (the account switcher),
- ``branch_accounts`` of the whole company,
- ``account_lines`` (the overview's balances, charges and debt) and
  ``consolidated_services`` (the consolidated invoice) of the whole company
  and of one department,

and counts the SQL statements each issues (the same few whatever N).
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

from sqlalchemy import event, insert, select
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scratch import DEFAULT_URL, scratch_database  # noqa: E402
from rating import documents, org  # noqa: E402
from rating.models import Account, CabinetUser, LedgerEntry, OrgUnit  # noqa: E402


def seed(engine, accounts: int, departments: int, teams: int) -> dict:
    with Session(engine) as session:
        customer = org.create_customer(session, kind="company", name="Bench Corp",
                                       actor="bench")
        employees_per_team = max(1, accounts // (departments * teams * 5))
        leaves, depts = [], []
        for d in range(departments):
            dept = org.create_unit(session, customer.id, f"Dept {d}", actor="bench")
            depts.append(dept.id)
            for t in range(teams):
                team = org.create_unit(session, customer.id, f"Team {d}.{t}", actor="bench",
                                       parent_id=dept.id)
                rows = [dict(customer_id=customer.id, parent_id=team.id, name=f"E {d}.{t}.{e}",
                             position=e) for e in range(employees_per_team)]
                session.execute(insert(OrgUnit), rows)
        session.flush()
        leaves = list(session.scalars(select(OrgUnit.id).where(
            OrgUnit.customer_id == customer.id, OrgUnit.name.like("E %")).order_by(OrgUnit.id)))
        session.execute(insert(Account), [
            dict(number=f"B{n:07d}", kind="company", name=f"Line {n}",
                 balance=Decimal(500 - n % 900), customer_id=customer.id,
                 org_unit_id=leaves[n % len(leaves)]) for n in range(accounts)])
        ids = list(session.scalars(select(Account.id).where(Account.customer_id == customer.id)))
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        session.execute(insert(LedgerEntry), [
            dict(account_id=account_id, amount=Decimal("-600.00"), kind="fee",
                 idempotency_key=f"fee:{account_id}:bench", author="bench", created_at=now)
            for account_id in ids])
        head = Account(number="HEAD", kind="company", name="Head", customer_id=customer.id)
        session.add(head)
        session.flush()
        users = {}
        for login in ("branch", "director"):
            user = CabinetUser(account_id=head.id, login=login, password_hash="x", role="viewer")
            session.add(user)
            session.flush()
            users[login] = user.id
        org.grant(session, users["branch"], customer.id, "view,pay", actor="bench",
                  unit_id=depts[0])
        org.grant(session, users["director"], customer.id, org.RIGHTS, actor="bench")
        session.commit()
        branch = org.branch_accounts(session, customer.id, depts[0])
        return dict(customer=customer.id, dept=depts[0], users=users, inside=branch[-1],
                    outside=ids[-1], units=len(leaves) + departments * (teams + 1))


def timed(engine, repeat: int, call) -> tuple[float, int]:
    """(median milliseconds, statements per call)."""
    statements = []

    def count(*_args):
        statements.append(1)
    samples = []
    for n in range(repeat):
        with Session(engine) as session:
            if n == 0:
                event.listen(engine, "before_cursor_execute", count)
            started = time.perf_counter()
            call(session)
            samples.append((time.perf_counter() - started) * 1000)
            if n == 0:
                event.remove(engine, "before_cursor_execute", count)
    return statistics.median(samples), len(statements)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--departments", type=int, default=10)
    parser.add_argument("--teams", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--url", default=DEFAULT_URL)
    args = parser.parse_args()
    with scratch_database(args.url, prefix="abonent_bench_org") as (engine, _url):
        started = time.perf_counter()
        facts = seed(engine, args.accounts, args.departments, args.teams)
        print(f"seeded {args.accounts} accounts in {facts['units']} units "
              f"in {time.perf_counter() - started:.1f} s")
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        start, end = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0), \
            now + dt.timedelta(days=1)
        branch, director = facts["users"]["branch"], facts["users"]["director"]
        every = None

        def all_ids(session):
            nonlocal every
            every = org.branch_accounts(session, facts["customer"])
        with Session(engine) as session:
            all_ids(session)
            dept_ids = org.branch_accounts(session, facts["customer"], facts["dept"])
        checks = [
            ("rights_on, an account in the branch",
             lambda s: org.rights_on(s, branch, facts["inside"])),
            ("rights_on, an account outside it",
             lambda s: org.rights_on(s, branch, facts["outside"])),
            ("accounts_with_right view, one department",
             lambda s: org.accounts_with_right(s, branch, "view")),
            ("accounts_with_right view, the whole company",
             lambda s: org.accounts_with_right(s, director, "view")),
            ("branch_accounts, the whole company", all_ids),
            (f"account_lines, one department ({len(dept_ids)} accounts)",
             lambda s: org.account_lines(s, org.branch_query(facts["customer"], [facts["dept"]]),
                                         start, end)),
            (f"account_lines, the whole company ({len(every)} accounts)",
             lambda s: org.account_lines(s, org.branch_query(facts["customer"]), start, end)),
            ("consolidated invoice, the whole company",
             lambda s: documents.consolidated_services(s, "C1", org.branch_query(
                 facts["customer"]), start.date(), end.date(), start, end)),
        ]
        for name, call in checks:
            milliseconds, statements = timed(engine, args.repeat, call)
            print(f"{name}: {milliseconds:.2f} ms median, {statements} statement(s)")


if __name__ == "__main__":
    main()
