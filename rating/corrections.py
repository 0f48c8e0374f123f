"""Money corrections by an admin: a manual charge, a refund, a reversal, a
transfer between two accounts.

Rules (DESIGN "Money that cannot go wrong"):
- a correction is a new ledger entry, never an edit; its author is the
  admin who made it and its memo the reason they gave;
- idempotent on the caller's external id: the same id posts once, and a
  retry returns the first posting with ``created=False``. Without an id
  nothing is deduplicated: each call is a new correction (a random key);
- every correction that moves a balance runs the balance ladder for the
  accounts it touched, exactly as a payment does
  (``fees.apply_policies``): a charge or refund that takes an account
  below zero throttles its sessions through the profile-change outbox;
- each writes one operation-log line per account touched.

Kinds: a charge is a negative ``correction``; a refund (money paid back
to the subscriber out of their balance) a negative ``refund``; a transfer
two ``correction`` legs keyed ``transfer:ID:from`` / ``transfer:ID:to``; a
reversal the opposite ``correction`` with ``reverses_id`` (ledger.reverse).

The caller owns the transaction: these functions never commit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from rating import fees, ledger, oplog, validate
from rating.models import Account, LedgerEntry
from rating.validate import DomainError, NotFound

REASON_MAX = 1000
TRANSFER_PREFIX = "transfer:"


@dataclass(frozen=True)
class Correction:
    action: str
    postings: tuple[ledger.Posting, ...]

    @property
    def created(self) -> bool:
        return any(p.created for p in self.postings)


def reason_text(value) -> str:
    return validate.text(value, "reason", maximum=REASON_MAX, multiline=True)


def _key(prefix: str, external_id: str | None) -> str:
    return f"{prefix}:{external_id if external_id is not None else uuid.uuid4().hex}"


def _enforce(session: Session, account_ids, reason: str) -> None:
    # The path a payment takes (accounts.add_payment): the ladder decides
    # the profile at once and the outbox carries it to the network.
    for account_id in sorted(set(account_ids)):
        fees.apply_policies(session, account_id, account_id + 1, reason=reason)


def _debit(session: Session, action: str, kind: str, account: Account, amount, *, reason,
           actor: str, external_id: str | None) -> Correction:
    value = validate.amount(amount, f"{action} amount", positive=True)
    reason = reason_text(reason)
    external_id = validate.external_id(external_id)
    try:
        posting = ledger.post(session, account_id=account.id, amount=-value, kind=kind,
                              key=_key(action, external_id), author=actor, memo=reason,
                              memo_code=action, memo_args={"reason": reason})
    except ledger.KeyConflict:
        raise DomainError(f"{action} {external_id} was already recorded with another amount "
                          f"or account") from None
    if posting.created:
        oplog.record(session, account_id=account.id, actor=actor, action=f"ledger.{action}",
                     amount=value, reason=reason, external_id=external_id,
                     entry_id=posting.entry_id)
        _enforce(session, [account.id], action)
    return Correction(action, (posting,))


def charge(session: Session, account: Account, amount, *, reason, actor: str,
           external_id: str | None = None) -> Correction:
    """Take ``amount`` from the account (a manual charge); may take it below
    its credit limit: an admin's charge is not refused for lack of funds."""
    return _debit(session, "charge", "correction", account, amount, reason=reason, actor=actor,
                  external_id=external_id)


def refund(session: Session, account: Account, amount, *, reason, actor: str,
           external_id: str | None = None) -> Correction:
    """Money paid back to the subscriber out of their balance; like a
    charge, it may take the balance below zero (and the ladder follows)."""
    return _debit(session, "refund", "refund", account, amount, reason=reason, actor=actor,
                  external_id=external_id)


def transfer(session: Session, source: Account, target: Account, amount, *, reason,
             actor: str, external_id: str | None = None) -> Correction:
    """Move ``amount`` from ``source`` to ``target``: both legs or neither.
    The debit is guarded: it may not take ``source`` past its credit limit."""
    value = validate.amount(amount, "transfer amount", positive=True)
    reason = reason_text(reason)
    external_id = validate.external_id(external_id)
    if source.id == target.id:
        raise DomainError(f"cannot transfer from account {source.number} to itself")
    key = _key("transfer", external_id)
    try:
        out = ledger.post(session, account_id=source.id, amount=-value, kind="correction",
                          key=f"{key}:from", author=actor, memo=reason, guarded=True,
                          memo_code="transfer_out", memo_args={"reason": reason})
        into = ledger.post(session, account_id=target.id, amount=value, kind="correction",
                           key=f"{key}:to", author=actor, memo=reason,
                           memo_code="transfer_in", memo_args={"reason": reason})
    except ledger.KeyConflict:
        raise DomainError(f"transfer {external_id} was already recorded with another amount "
                          f"or accounts") from None
    except ledger.InsufficientFunds:
        raise DomainError(f"account {source.number} has not enough money for a transfer of "
                          f"{value} (balance and credit limit)") from None
    if out.created != into.created:  # half of it recorded before: cannot happen in one txn
        raise DomainError(f"transfer {external_id} was recorded only in part; check the ledger")
    if out.created:
        for account, other, leg in ((source, target, out), (target, source, into)):
            oplog.record(session, account_id=account.id, actor=actor, action="ledger.transfer",
                         amount=leg.amount, reason=reason, external_id=external_id,
                         counterpart=other.number, entry_id=leg.entry_id)
        _enforce(session, [source.id, target.id], "transfer")
    return Correction("transfer", (out, into))


def _transfer_partner(session: Session, entry: LedgerEntry) -> LedgerEntry | None:
    key = entry.idempotency_key
    if not key.startswith(TRANSFER_PREFIX):
        return None
    stem, _, leg = key.rpartition(":")
    other = {"from": "to", "to": "from"}.get(leg)
    if other is None:
        return None
    return session.scalar(select(LedgerEntry).where(
        LedgerEntry.idempotency_key == f"{stem}:{other}"))


def reverse(session: Session, entry_id: int, *, reason, actor: str) -> Correction:
    """Cancel an entry with an opposite one. Refused for a reversal and for
    an entry already reversed. Either leg of a transfer reverses both."""
    reason = reason_text(reason)
    entry = session.get(LedgerEntry, entry_id)
    if entry is None:
        raise NotFound(f"ledger entry {entry_id} does not exist")
    if entry.reverses_id is not None:
        raise DomainError(f"ledger entry {entry_id} is itself a reversal (of entry "
                          f"{entry.reverses_id}); post a charge or a refund instead")
    entries = [entry]
    partner = _transfer_partner(session, entry)
    if partner is not None:
        entries.append(partner)
    postings = []
    for item in entries:
        done = session.scalar(select(LedgerEntry.id).where(LedgerEntry.reverses_id == item.id))
        if done is not None:
            raise DomainError(f"ledger entry {item.id} was already reversed by entry {done}; "
                              f"nothing changed")
        posting = ledger.reverse(session, item.id, author=actor, memo=reason)
        if not posting.created:  # another admin reversed it a moment ago
            raise DomainError(f"ledger entry {item.id} was already reversed; nothing changed")
        postings.append(posting)
        oplog.record(session, account_id=item.account_id, actor=actor, action="ledger.reverse",
                     amount=posting.amount, reason=reason, reversed_entry_id=item.id,
                     entry_id=posting.entry_id)
    _enforce(session, [item.account_id for item in entries], "reversal")
    return Correction("reverse", tuple(postings))

