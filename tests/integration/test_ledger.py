from decimal import Decimal

import pytest
from sqlalchemy import func, select

from rating import accounts, ledger
from rating.models import LedgerEntry
from tests.factories import make_account


def test_posting_is_idempotent_on_its_key(session):
    account = make_account(session)
    first = ledger.post(session, account_id=account.id, amount="100.50", kind="payment",
                        key="payment:bank:1", author="test")
    again = ledger.post(session, account_id=account.id, amount="100.50", kind="payment",
                        key="payment:bank:1", author="test")
    session.commit()
    assert first.created and not again.created
    assert again.entry_id == first.entry_id
    assert session.scalar(select(func.count()).select_from(LedgerEntry)) == 1
    session.refresh(account)
    assert account.balance == Decimal("100.50")


def test_same_key_with_another_amount_is_a_conflict(session):
    account = make_account(session)
    ledger.post(session, account_id=account.id, amount="10", kind="payment", key="k", author="t")
    with pytest.raises(ledger.KeyConflict):
        ledger.post(session, account_id=account.id, amount="11", kind="payment", key="k",
                    author="t")


def test_guarded_debit_stops_at_the_credit_limit(session):
    account = make_account(session, credit_limit="50")
    accounts.add_payment(session, account, "100", external_id="p1")
    ledger.post(session, account_id=account.id, amount="-150", kind="fee", key="f1",
                author="t", guarded=True)
    with pytest.raises(ledger.InsufficientFunds):
        ledger.post(session, account_id=account.id, amount="-0.01", kind="fee", key="f2",
                    author="t", guarded=True)
    session.commit()
    session.refresh(account)
    assert account.balance == Decimal("-50.00")
    # The refused debit left nothing behind, and the transaction went on.
    assert session.scalar(select(LedgerEntry.id).where(LedgerEntry.idempotency_key == "f2")) is None
    # An unguarded debit (e.g. traffic already consumed) may pass the limit.
    ledger.post(session, account_id=account.id, amount="-1", kind="traffic", key="t1", author="t")
    session.commit()
    session.refresh(account)
    assert account.balance == Decimal("-51.00")


def test_reversal_cancels_once_and_keeps_the_original(session):
    account = make_account(session)
    posting = accounts.add_payment(session, account, "300", external_id="x1")
    ledger.reverse(session, posting.entry_id, author="t")
    again = ledger.reverse(session, posting.entry_id, author="t")
    session.commit()
    assert not again.created
    session.refresh(account)
    assert account.balance == Decimal("0.00")
    amounts = sorted(session.scalars(select(LedgerEntry.amount)))
    assert amounts == [Decimal("-300.00"), Decimal("300.00")]
    assert ledger.balance_mismatches(session) == []


def test_money_sums_are_exact(session):
    account = make_account(session)
    for i in range(100):
        ledger.post(session, account_id=account.id, amount="0.10", kind="payment",
                    key=f"p{i}", author="t")
    session.commit()
    session.refresh(account)
    assert account.balance == Decimal("10.00")
    assert ledger.balance_mismatches(session) == []


@pytest.mark.parametrize("bad", ["1.001", "abc", "NaN", "Infinity", ""])
def test_bad_amounts_are_refused(session, bad):
    account = make_account(session)
    with pytest.raises(accounts.DomainError):
        accounts.add_payment(session, account, bad)


def test_unknown_account(session):
    with pytest.raises(ledger.UnknownAccount):
        ledger.post(session, account_id=999999, amount="-1", kind="fee", key="z", author="t",
                    guarded=True)
