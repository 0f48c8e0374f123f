"""Bulk changes (issue 21): a bulk tariff change on 300 accounts equals 300
single changes (ledger lines, CoA outbox rows, history), is applied once
however often it is applied, and is reverted through the same rules."""

import datetime as dt
from collections import Counter
from decimal import Decimal

from sqlalchemy import func, select

from rating import bulk, changes, ledger, packages, tariff_change
from rating.models import (Account, BulkItem, LedgerEntry, OperationLog, ProfileChange)
from rating.tariffs import fee_key, upgrade_difference
from tests.factories import make_account, make_tariff

TODAY = dt.date(2026, 12, 6)
NOW = dt.datetime(2026, 12, 6, 10, 0)
ACTOR = "admin:bulk-test"


def _terms(today=TODAY, now=NOW):
    return changes.Terms(now=now, today=today, actor=ACTOR)


def _accounts(session, tariff, count, paid=True, balance=None):
    ids = []
    for _ in range(count):
        account = make_account(session, tariff=tariff.name, balance=balance)
        if paid:
            ledger.post(session, account_id=account.id, amount=-tariff.fee, kind="fee",
                        key=fee_key(account.id, "monthly", TODAY), author="test")
        ids.append(account.id)
    session.flush()
    return ids


def _signature(session, ids):
    """What the changes left, per account in order, with the account's own
    id taken out of keys: ledger lines (not the seed payments, whose keys
    carry the number), outbox rows, tariff log lines."""
    index = {account_id: n for n, account_id in enumerate(ids)}
    entries = Counter()
    for entry in session.scalars(select(LedgerEntry).where(LedgerEntry.account_id.in_(ids),
                                                           LedgerEntry.kind != "payment")):
        entries[(index[entry.account_id], entry.amount, entry.kind, entry.memo_code,
                 entry.idempotency_key.replace(f":{entry.account_id}:", ":ACCOUNT:"))] += 1
    outbox = Counter((index[c.account_id], c.profile, c.reason) for c in session.scalars(
        select(ProfileChange).where(ProfileChange.account_id.in_(ids))))
    history = Counter((index[line.account_id], line.actor, line.action,
                       tuple(sorted(line.details.items()))) for line in session.scalars(
        select(OperationLog).where(OperationLog.account_id.in_(ids),
                                   OperationLog.action.like("tariff.%"))))
    return entries, outbox, history


def test_bulk_tariff_change_on_300_accounts_equals_300_single_changes(ctx):
    with ctx.Session() as session:
        cheap = make_tariff(session, name="Home 600", fee="600.00")
        dear = make_tariff(session, name="Home 900", fee="900.00", switch_min_days=30)
        chosen = _accounts(session, cheap, 300)
        twins = _accounts(session, cheap, 300)
        closed = make_account(session, tariff=cheap.name)
        closed.state = "closed"
        already = make_account(session, tariff=dear.name)
        recent = make_account(session, tariff=cheap.name)
        recent.tariff_changed_at = NOW - dt.timedelta(days=1)
        # 300 single changes, as an admin makes them one by one.
        for account_id in twins:
            tariff_change.change(session, session.get(Account, account_id), dear.name, "now",
                                 NOW, TODAY, actor=ACTOR)
        session.commit()
        refused_ids = [closed.id, already.id, recent.id]

    with ctx.Session() as session:
        selected = bulk.select_accounts(session, account_ids=chosen + refused_ids)
        operation = bulk.preview(session, "tariff", {"tariff": "Home 900"}, selected, _terms(),
                                 selection={"accounts": len(selected)})
        session.commit()
        operation_id = operation.id
        shown = bulk.totals(session, operation_id)
        difference = upgrade_difference(Decimal("600.00"), Decimal("900.00"),
                                        TODAY + dt.timedelta(days=1))
        assert (shown.total, shown.ready, shown.refused) == (303, 300, 3)
        assert shown.cost == difference * 300
        assert shown.by_reason == {"closed": 1, "same_tariff": 1, "too_frequent": 1}
        # A preview changes no account.
        assert session.scalar(select(func.count()).select_from(Account).where(
            Account.next_tariff_id.is_not(None))) == 300
        reasons = dict(session.execute(select(BulkItem.account_id, BulkItem.reason).where(
            BulkItem.bulk_id == operation_id, BulkItem.state == "refused")).all())
        assert reasons[recent.id].startswith("the tariff can be changed again from")

    seen = []
    applied = bulk.apply(ctx.Session, operation_id, _terms(), progress=seen.append)
    assert (applied.state, applied.done, applied.refused) == ("partially", 300, 3)
    assert sum(seen) == 300
    # Applied again (a retry, a second node): nothing more happens.
    with ctx.Session() as session:
        lines = session.scalar(select(func.count()).select_from(OperationLog))
    again = bulk.apply(ctx.Session, operation_id, _terms())
    assert again.done == 300
    with ctx.Session() as session:
        assert session.scalar(select(func.count()).select_from(OperationLog)) == lines
        # Each item names the log line it made.
        item = session.scalar(select(BulkItem).where(BulkItem.bulk_id == operation_id,
                                                     BulkItem.state == "done").limit(1))
        line = session.get(OperationLog, item.result["oplog"])
        assert (line.account_id, line.action) == (item.account_id, "tariff.change")
        assert item.cost == difference and item.before == {"tariff": "Home 600"}

    # The orders start tomorrow: the scheduler's pass charges the
    # difference and writes the outbox, for both sets alike.
    with ctx.Session() as session:
        assert tariff_change.apply_due(session, TODAY + dt.timedelta(days=1)) == 600
        session.commit()
        assert _signature(session, chosen) == _signature(session, twins)
        entries, outbox, _ = _signature(session, chosen)
        assert sum(n for (_, amount, *_), n in entries.items() if amount == -difference) == 300
        assert sum(outbox.values()) == 300
        assert ledger.balance_mismatches(session) == []

    # Revert: back to the old tariff through the same rules.
    tomorrow = TODAY + dt.timedelta(days=1)
    later = NOW + dt.timedelta(days=1)
    with ctx.Session() as session:
        back = bulk.revert(session, operation_id, _terms(tomorrow, later))
        session.commit()
        back_id = back.id
        assert bulk.totals(session, back_id).ready == 300
    reverted = bulk.apply(ctx.Session, back_id, _terms(tomorrow, later))
    assert (reverted.state, reverted.done) == ("applied", 300)
    with ctx.Session() as session:
        assert bulk.get(session, operation_id).state == "reverted"
        tariff_change.apply_due(session, tomorrow + dt.timedelta(days=1))
        session.commit()
        tariffs = Counter(session.scalars(select(Account.tariff_id).where(
            Account.id.in_(chosen))))
        assert tariffs == Counter({cheap.id: 300})


def test_revert_before_the_start_cancels_the_orders(ctx):
    with ctx.Session() as session:
        cheap = make_tariff(session, fee="100.00")
        dear = make_tariff(session, fee="200.00", switch_min_days=10)
        ids = _accounts(session, cheap, 5, paid=False)
        session.commit()
        operation = bulk.preview(session, "tariff", {"tariff": dear.name}, ids, _terms())
        session.commit()
        operation_id = operation.id
    bulk.apply(ctx.Session, operation_id, _terms())
    with ctx.Session() as session:
        back = bulk.revert(session, operation_id, _terms())
        session.commit()
        back_id = back.id
    bulk.apply(ctx.Session, back_id, _terms())
    with ctx.Session() as session:
        rows = session.execute(select(Account.tariff_id, Account.next_tariff_id,
                                      Account.tariff_changed_at)
                               .where(Account.id.in_(ids))).all()
        # The order withdrawn, and the frequency limit given back.
        assert set(rows) == {(cheap.id, None, None)}
        actions = Counter(session.scalars(select(OperationLog.action).where(
            OperationLog.account_id.in_(ids))))
        assert actions["tariff.change"] == 5 and actions["tariff.cancel"] == 5


def test_bulk_package_and_freeze_go_through_the_single_rules(ctx):
    with ctx.Session() as session:
        tariff = make_tariff(session, fee="300.00")
        ids = _accounts(session, tariff, 4, paid=False, balance="1000")
        poor = make_account(session, tariff=tariff.name)
        package = packages.create(session, name="TV", fee="150.00")
        session.commit()
        package_id = package.id
        every = ids + [poor.id]
        on = bulk.preview(session, "package_on", {"package": "TV"}, every,
                          changes.Terms(now=NOW, today=TODAY, actor=ACTOR, by_subscriber=True))
        session.commit()
        on_id = on.id
        assert bulk.totals(session, on_id).by_reason == {"no_money": 1}
    bulk.apply(ctx.Session, on_id, changes.Terms(now=NOW, today=TODAY, actor=ACTOR,
                                                 by_subscriber=True))
    with ctx.Session() as session:
        keys = set(session.scalars(select(LedgerEntry.idempotency_key).where(
            LedgerEntry.account_id.in_(ids), LedgerEntry.kind == "fee")))
        assert keys == {packages.package_key(a, package_id, "monthly", TODAY) for a in ids}
        frozen = bulk.preview(session, "freeze", {"until": "2026-12-20"}, every, _terms())
        session.commit()
        frozen_id = frozen.id
    done = bulk.apply(ctx.Session, frozen_id, _terms())
    assert done.done == 5
    with ctx.Session() as session:
        assert set(session.scalars(select(Account.state).where(Account.id.in_(every)))) == {
            "frozen"}
        reasons = Counter(session.scalars(select(ProfileChange.reason).where(
            ProfileChange.account_id.in_(every))))
        assert reasons["freeze"] == 5
        back = bulk.revert(session, frozen_id, _terms())
        session.commit()
        back_id = back.id
    bulk.apply(ctx.Session, back_id, _terms())
    with ctx.Session() as session:
        assert set(session.scalars(select(Account.state).where(Account.id.in_(every)))) == {
            "active"}


def test_bad_input_changes_nothing(ctx):
    import pytest

    from rating.validate import DomainError
    with ctx.Session() as session:
        tariff = make_tariff(session)
        ids = _accounts(session, tariff, 2, paid=False)
        session.commit()
        for kind, parameters in (("tariff", {"tariff": "No such"}), ("teleport", {}),
                                 ("freeze", {"until": "soon"}), ("option", {"option": "x"})):
            with pytest.raises(DomainError):
                bulk.preview(session, kind, parameters, ids, _terms())
            session.rollback()
        with pytest.raises(DomainError):
            bulk.select_accounts(session, numbers=["no-such-account"])
        with pytest.raises(DomainError):
            bulk.select_accounts(session)
        assert session.scalar(select(func.count()).select_from(BulkItem)) == 0


def test_an_apply_cut_short_is_continued_and_makes_nothing_twice(ctx, monkeypatch):
    import pytest
    with ctx.Session() as session:
        cheap = make_tariff(session, fee="100.00")
        dear = make_tariff(session, fee="200.00")
        ids = _accounts(session, cheap, 7, paid=False)
        session.commit()
        operation = bulk.preview(session, "tariff", {"tariff": dear.name}, ids, _terms())
        session.commit()
        operation_id = operation.id
    monkeypatch.setattr(bulk, "APPLY_CHUNK", 3)
    made = []
    real = changes.perform

    def crashing(*args, **kwargs):
        if len(made) == 4:       # the second chunk's second account: the process dies
            raise RuntimeError("killed")
        made.append(args[1].id)
        return real(*args, **kwargs)

    monkeypatch.setattr(changes, "perform", crashing)
    with pytest.raises(RuntimeError):
        bulk.apply(ctx.Session, operation_id, _terms())
    with ctx.Session() as session:
        # The first chunk is kept whole, the second not at all.
        assert bulk.get(session, operation_id).state == "applying"
        assert (bulk.totals(session, operation_id).done,
                bulk.totals(session, operation_id).ready) == (3, 4)
        assert session.scalar(select(func.count()).select_from(Account).where(
            Account.next_tariff_id.is_not(None))) == 3
    monkeypatch.setattr(changes, "perform", real)
    finished = bulk.apply(ctx.Session, operation_id, _terms())
    assert (finished.state, finished.done) == ("applied", 7)
    with ctx.Session() as session:
        lines = Counter(session.scalars(select(OperationLog.account_id).where(
            OperationLog.action == "tariff.change")))
        assert lines == Counter({account_id: 1 for account_id in ids})
