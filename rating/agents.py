"""Payment agents and terminal networks speaking the OSMP protocol.

An agent (a QIWI-style terminal network, a bank's cash desks, a retail
chain) takes cash from a subscriber and tells us with two HTTP requests:
``check`` (does the account exist, may it be paid) and ``pay`` (credit it).
This module is the protocol's domain half, free of HTTP: what a request's
fields mean, which result code each refusal gets, and the payment itself.
cabinet/osmp.py turns requests into calls here and results into XML.

Rules kept here:

- an agent is configuration an operator manages (``abonent agent …``): a
  name, a password stored only as a scrypt hash, the source networks its
  requests may come from, per-payment amount limits, enabled or not;
- ``pay`` is idempotent on (agent, txn_id): the first pay inserts an
  ``agent_payments`` row (INSERT … ON CONFLICT DO NOTHING, so two copies at
  once cannot both win), credits through rating.accounts.add_payment with
  the ledger key ``payment:osmp:<agent>:<txn_id>`` and records a
  ``provider_payments`` row (provider ``osmp:<agent>``, status ``paid``) so
  the operator sees it with every other payment. A repeated pay answers
  the first result, with the same ``prv_txn``, and credits nothing;
- every refusal is a result code (``Result``) and changes nothing.

Exceptions::

    DomainError (rating.validate)
     └── AgentError            bad agent configuration (CLI: exit 2)
    OsmpRefusal(code, comment) a request refused with an OSMP result code
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Optional

import netaddr
from sqlalchemy import (JSON, Boolean, CheckConstraint, DateTime, ForeignKey, Integer, String,
                        UniqueConstraint, func, select)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from config.db import Base, Money, money, utcnow
from rating import accounts, oplog, validate
from rating.models import Account
from rating.passwords import hash_password, verify_password
from rating.payments import ProviderPayment
from rating.validate import DomainError, NotFound

PROVIDER_PREFIX = "osmp:"
# provider_payments.provider is String(32): "osmp:" + 26 characters.
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,25}$")
# OSMP's txn_id is the agent's payment number: digits, at most 20 of them
# (a 64-bit unsigned integer). Anything else is a malformed request.
_TXN_ID = re.compile(r"^[0-9]{1,20}$")
# A sum as the protocol sends it: digits, a dot (a comma is tolerated) and at
# most two decimals. "10.455" is refused, never rounded: rounding would
# credit a different amount than the terminal took.
_SUM = re.compile(r"^[0-9]{1,15}(?:[.,][0-9]{1,2})?$")
_SIGNED_NUMBER = re.compile(r"^[+-]?[0-9]{1,40}(?:[.,][0-9]+)?$")
# The account as a subscriber types it on a terminal: our account numbers.
_ACCOUNT = re.compile(r"^[0-9A-Za-z-]{1,32}$")
MIN_PASSWORD = 12

DEFAULT_MIN_AMOUNT = Decimal("1.00")
DEFAULT_MAX_AMOUNT = Decimal("15000.00")


class Result:
    """OSMP result codes (the QIWI provider protocol's table)."""

    OK = 0
    TEMPORARY = 1            # temporary error, the agent repeats the request later
    BAD_ACCOUNT_FORMAT = 4   # the account does not look like an account
    ACCOUNT_NOT_FOUND = 5
    REFUSED = 7              # the payment is refused by the provider
    TECHNICAL = 8            # refused for technical reasons
    ACCOUNT_INACTIVE = 79    # the subscriber's account is not active (closed)
    AMOUNT_TOO_SMALL = 241
    AMOUNT_TOO_LARGE = 242
    OTHER = 300              # any other error


class AgentError(DomainError):
    pass


class OsmpRefusal(Exception):
    """A request refused with an OSMP result code; nothing was changed."""

    def __init__(self, code: int, comment: str):
        super().__init__(comment)
        self.code = code
        self.comment = comment


# -- models -------------------------------------------------------------------

class PaymentAgent(Base):
    """An agent allowed to send OSMP requests to /osmp/<name>."""

    __tablename__ = "payment_agents"
    __table_args__ = (
        CheckConstraint("min_amount > 0 AND max_amount >= min_amount", name="amounts"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(26), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    # CIDR strings ("91.232.230.0/23"); a request from elsewhere is refused.
    networks: Mapped[list[str]] = mapped_column(JSON)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    min_amount: Mapped[Decimal] = mapped_column(Money, default=DEFAULT_MIN_AMOUNT)
    max_amount: Mapped[Decimal] = mapped_column(Money, default=DEFAULT_MAX_AMOUNT)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    def __repr__(self) -> str:  # never the hash
        return f"PaymentAgent(name={self.name!r}, enabled={self.enabled!r})"

    @property
    def provider(self) -> str:
        return PROVIDER_PREFIX + self.name


class AgentPayment(Base):
    """One accepted OSMP pay; its id is the ``prv_txn`` we answer."""

    __tablename__ = "agent_payments"
    __table_args__ = (
        UniqueConstraint("agent_id", "txn_id"),
        CheckConstraint("amount > 0", name="amount"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("payment_agents.id"))
    txn_id: Mapped[str] = mapped_column(String(20))
    # The agent's own time of the payment (txn_date), as it sent it: the
    # registry it reconciles against is dated by the agent's clock.
    txn_date: Mapped[dt.datetime] = mapped_column(DateTime, index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    amount: Mapped[Decimal] = mapped_column(Money)
    received_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    provider_payment_id: Mapped[Optional[int]] = mapped_column(
        ForeignKey("provider_payments.id"))
    entry_id: Mapped[Optional[int]] = mapped_column(ForeignKey("ledger_entries.id"))


# -- request fields (pure) ------------------------------------------------------

def parse_sum(text) -> Decimal:
    """The ``sum`` parameter as money, or OsmpRefusal: a malformed number or
    more than two decimals is 300, zero or below is 241 (too small)."""
    raw = "" if text is None else str(text).strip()
    if not raw:
        raise OsmpRefusal(Result.OTHER, "sum is missing")
    if not _SUM.match(raw):
        if _SIGNED_NUMBER.match(raw):
            try:
                value = Decimal(raw.replace(",", "."))
            except InvalidOperation:  # pragma: no cover - the pattern admits only numbers
                value = None
            if value is not None and value <= 0:
                raise OsmpRefusal(Result.AMOUNT_TOO_SMALL, "sum must be more than zero")
            if value is not None and value == value.quantize(Decimal("0.01")):
                raise OsmpRefusal(Result.AMOUNT_TOO_LARGE, "sum is too large")
        raise OsmpRefusal(Result.OTHER, "sum must be a number like 100.00 with at most "
                                        "two decimals")
    value = money(raw.replace(",", "."))
    if value <= 0:
        raise OsmpRefusal(Result.AMOUNT_TOO_SMALL, "sum must be more than zero")
    return value


def parse_txn_id(text) -> str:
    raw = "" if text is None else str(text)
    if not _TXN_ID.match(raw):
        raise OsmpRefusal(Result.OTHER, "txn_id must be 1-20 digits")
    return raw


def parse_txn_date(text) -> dt.datetime:
    """``txn_date`` is YYYYMMDDHHMMSS, the agent's local time."""
    raw = "" if text is None else str(text)
    if not re.match(r"^[0-9]{14}$", raw):
        raise OsmpRefusal(Result.OTHER, "txn_date must be YYYYMMDDHHMMSS")
    try:
        return dt.datetime.strptime(raw, "%Y%m%d%H%M%S")
    except ValueError:
        raise OsmpRefusal(Result.OTHER, "txn_date must be YYYYMMDDHHMMSS") from None


def parse_account(text) -> str:
    raw = "" if text is None else str(text).strip()
    if not _ACCOUNT.match(raw):
        raise OsmpRefusal(Result.BAD_ACCOUNT_FORMAT, "the account number has a wrong format")
    return raw


def mask_name(name: str) -> str:
    """A name a terminal may show to whoever typed the account number:
    enough to recognise one's own ("Ив***в И."), too little to learn a
    stranger's. The first word keeps its first two letters and its last
    one; the next word becomes an initial; the rest is dropped."""
    words = (name or "").replace(".", ". ").split()
    if not words:
        return ""
    first = words[0]
    if len(first) <= 3:
        masked = first[0] + "***"
    else:
        masked = first[:2] + "***" + first[-1]
    if len(words) > 1:
        masked += f" {words[1][0]}."
    return masked


# -- agents as configuration ----------------------------------------------------

def _agent_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise AgentError("an agent name must be 1-26 lower-case letters, digits, - or _, "
                         "starting with a letter or digit")
    return name


def _password(password: str) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD or len(password) > 200 \
            or not password.isprintable():
        raise AgentError(f"an agent password must be {MIN_PASSWORD}-200 printable characters")
    return password


def parse_networks(values) -> list[str]:
    """CIDR networks (or single addresses) as canonical strings."""
    result = []
    for value in values:
        for part in str(value).replace(";", ",").split(","):
            part = part.strip()
            if not part:
                continue
            try:
                network = netaddr.IPNetwork(part)
            except (netaddr.AddrFormatError, ValueError, TypeError):
                raise AgentError(f"{part!r} is not a network like 91.232.230.0/23 or an "
                                 f"address") from None
            canonical = str(network.cidr)
            if canonical not in result:
                result.append(canonical)
    if not result:
        raise AgentError("give at least one allowed network (--allow 91.232.230.0/23)")
    return result


def _limits(min_amount, max_amount) -> tuple[Decimal, Decimal]:
    low = validate.amount(min_amount, "minimum amount", positive=True)
    high = validate.amount(max_amount, "maximum amount", positive=True)
    if high < low:
        raise AgentError("the maximum amount must not be below the minimum")
    return low, high


def find_agent(session: Session, name: str) -> PaymentAgent:
    agent = session.scalar(select(PaymentAgent).where(PaymentAgent.name == name))
    if agent is None:
        raise NotFound(f"agent {name!r} does not exist")
    return agent


def add_agent(session: Session, *, name: str, password: str, networks, enabled: bool = True,
              min_amount=DEFAULT_MIN_AMOUNT, max_amount=DEFAULT_MAX_AMOUNT,
              actor: str = "admin") -> PaymentAgent:
    name = _agent_name(name)
    password = _password(password)
    networks = parse_networks(networks)
    low, high = _limits(min_amount, max_amount)
    if session.scalar(select(PaymentAgent.id).where(PaymentAgent.name == name)) is not None:
        raise AgentError(f"agent {name!r} already exists")
    agent = PaymentAgent(name=name, password_hash=hash_password(password), networks=networks,
                         enabled=enabled, min_amount=low, max_amount=high)
    session.add(agent)
    session.flush()
    oplog.record(session, account_id=None, actor=actor, action="agent.add", name=name,
                 networks=networks, enabled=enabled)
    return agent


def edit_agent(session: Session, name: str, *, password: str | None = None, networks=None,
               enabled: bool | None = None, min_amount=None, max_amount=None,
               actor: str = "admin") -> PaymentAgent:
    agent = find_agent(session, name)
    changed = {}
    if password is not None:
        agent.password_hash = hash_password(_password(password))
        changed["password"] = "changed"  # never the password itself
    if networks is not None:
        agent.networks = parse_networks(networks)
        changed["networks"] = agent.networks
    if enabled is not None:
        agent.enabled = enabled
        changed["enabled"] = enabled
    if min_amount is not None or max_amount is not None:
        low, high = _limits(agent.min_amount if min_amount is None else min_amount,
                            agent.max_amount if max_amount is None else max_amount)
        agent.min_amount, agent.max_amount = low, high
        changed.update(min_amount=low, max_amount=high)
    if not changed:
        raise AgentError("nothing to change: give --password, --allow, --enable/--disable, "
                         "--min-amount or --max-amount")
    agent.updated_at = utcnow()
    session.flush()
    oplog.record(session, account_id=None, actor=actor, action="agent.edit", name=name,
                 **changed)
    return agent


def remove_agent(session: Session, name: str, *, actor: str = "admin") -> None:
    agent = find_agent(session, name)
    paid = session.scalar(select(func.count()).select_from(AgentPayment)
                          .where(AgentPayment.agent_id == agent.id))
    if paid:
        raise AgentError(f"agent {name!r} has {paid} payments and stays for the record; "
                         f"disable it instead (abonent agent edit {name} --disable)")
    session.delete(agent)
    session.flush()
    oplog.record(session, account_id=None, actor=actor, action="agent.remove", name=name)


def agent_view(agent: PaymentAgent) -> dict:
    return dict(name=agent.name, enabled=agent.enabled, networks=list(agent.networks),
                min_amount=agent.min_amount, max_amount=agent.max_amount,
                created_at=agent.created_at, updated_at=agent.updated_at)


# -- the protocol's use cases -------------------------------------------------

@dataclass(frozen=True)
class Answer:
    """What an OSMP response carries."""

    code: int
    comment: str
    txn_id: str | None = None
    prv_txn: int | None = None
    amount: Decimal | None = None
    name: str | None = None     # the masked name, on a successful check
    credited: bool = False      # True only for the pay that moved the money


def address_allowed(agent: PaymentAgent, address: str | None) -> bool:
    try:
        ip = netaddr.IPAddress(address or "")
    except (netaddr.AddrFormatError, ValueError, TypeError):
        return False
    if ip.version == 6 and ip.is_ipv4_mapped():
        ip = ip.ipv4()
    return any(ip in netaddr.IPNetwork(network) for network in agent.networks)


def authenticate(session: Session, name: str, password: str | None,
                 address: str | None) -> PaymentAgent:
    """The agent behind a request, or OsmpRefusal with why (for the log):
    ``unknown`` and ``password`` both read as one failure to the caller."""
    agent = session.scalar(select(PaymentAgent).where(PaymentAgent.name == name)) \
        if _NAME.match(name or "") else None
    if agent is None:
        # The same work as a real check, so a response's time does not
        # tell which agent names exist.
        verify_password(password or "", _dummy_hash())
        raise OsmpRefusal(Result.OTHER, "unknown")
    # The address before the password: from outside the agent's networks
    # the answer is the same whatever the password, so it cannot be guessed
    # from there.
    if not address_allowed(agent, address):
        raise OsmpRefusal(Result.OTHER, "address")
    if not verify_password(password or "", agent.password_hash):
        raise OsmpRefusal(Result.OTHER, "password")
    if not agent.enabled:
        raise OsmpRefusal(Result.REFUSED, "disabled")
    return agent


@functools.cache
def _dummy_hash() -> str:
    # Made on first use, not at import: every `abonent` command imports this
    # module, and a hash costs ~70 ms.
    return hash_password("not-an-agent-password")


def _payable_account(session: Session, number: str) -> Account:
    account = session.scalar(select(Account).where(Account.number == number))
    if account is None:
        raise OsmpRefusal(Result.ACCOUNT_NOT_FOUND, "the account does not exist")
    if account.state == "closed":
        raise OsmpRefusal(Result.ACCOUNT_INACTIVE, "the account is closed")
    return account


def _within_limits(agent: PaymentAgent, value: Decimal) -> None:
    if value < agent.min_amount:
        raise OsmpRefusal(Result.AMOUNT_TOO_SMALL, f"sum must be at least {agent.min_amount}")
    if value > agent.max_amount:
        raise OsmpRefusal(Result.AMOUNT_TOO_LARGE, f"sum must be at most {agent.max_amount}")


def check(session: Session, agent: PaymentAgent, params) -> Answer:
    """``command=check``: may this account be paid this sum. Writes nothing."""
    txn_id = parse_txn_id(params.get("txn_id"))
    number = parse_account(params.get("account"))
    value = parse_sum(params.get("sum")) if params.get("sum") not in (None, "") else None
    if value is not None:
        _within_limits(agent, value)
    account = _payable_account(session, number)
    return Answer(Result.OK, "OK", txn_id=txn_id, amount=value, name=mask_name(account.name))


def _insert_payment(session: Session, values: dict) -> int | None:
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (insert(AgentPayment).values(**values)
                 .on_conflict_do_nothing(index_elements=["agent_id", "txn_id"])
                 .returning(AgentPayment.id))
    return session.execute(statement).scalar_one_or_none()


def pay(session: Session, agent: PaymentAgent, params) -> Answer:
    """``command=pay``: credit the account once per (agent, txn_id).

    Works inside the caller's transaction; the caller commits. A repeat
    (the agent lost our answer and asks again) answers the first result.
    The same txn_id with another account or sum is refused (300): it is
    not the payment we accepted, and we do not guess which one is right.
    """
    txn_id = parse_txn_id(params.get("txn_id"))
    number = parse_account(params.get("account"))
    value = parse_sum(params.get("sum"))
    txn_date = parse_txn_date(params.get("txn_date"))
    previous = _previous(session, agent, txn_id)
    if previous is not None:
        return _repeat(session, previous, number, value)
    _within_limits(agent, value)
    account = _payable_account(session, number)
    payment_id = _insert_payment(session, dict(agent_id=agent.id, txn_id=txn_id,
                                               txn_date=txn_date, account_id=account.id,
                                               amount=value, received_at=utcnow()))
    if payment_id is None:
        # Another copy of this pay committed between our look and our insert.
        return _repeat(session, _previous(session, agent, txn_id), number, value)
    actor = f"agent:{agent.name}"
    posting = accounts.add_payment(session, account, value, external_id=txn_id,
                                   provider=agent.provider, actor=actor,
                                   memo=f"{agent.provider} {txn_id}")
    record = ProviderPayment(provider=agent.provider, txn_id=txn_id, account_id=account.id,
                             amount=value, status="paid", settled_at=utcnow(),
                             entry_id=posting.entry_id)
    session.add(record)
    session.flush()
    row = session.get(AgentPayment, payment_id)
    row.provider_payment_id, row.entry_id = record.id, posting.entry_id
    session.flush()
    return Answer(Result.OK, "OK", txn_id=txn_id, prv_txn=payment_id, amount=value,
                  credited=posting.created)


def _previous(session: Session, agent: PaymentAgent, txn_id: str) -> AgentPayment | None:
    return session.scalar(select(AgentPayment).where(AgentPayment.agent_id == agent.id,
                                                     AgentPayment.txn_id == txn_id))


def _repeat(session: Session, previous: AgentPayment, number: str, value: Decimal) -> Answer:
    account_number = session.scalar(select(Account.number)
                                     .where(Account.id == previous.account_id))
    if account_number != number or previous.amount != value:
        raise OsmpRefusal(Result.OTHER, f"txn_id {previous.txn_id} was already paid with "
                                        f"another account or sum")
    return Answer(Result.OK, "OK", txn_id=previous.txn_id, prv_txn=previous.id,
                  amount=previous.amount, credited=False)


def payments_for_registry(session: Session, agent: PaymentAgent, start: dt.datetime,
                          end: dt.datetime, txn_ids=()) -> list[tuple[str, dt.datetime, str,
                                                                      Decimal]]:
    """(txn_id, txn_date, account number, amount) of the agent's payments
    dated in [start, end) by the agent's clock, and of those named in
    ``txn_ids`` whatever their date (a payment the registry lists under
    another day is not missing)."""
    columns = (AgentPayment.txn_id, AgentPayment.txn_date, Account.number, AgentPayment.amount)
    base = (select(*columns).join(Account, Account.id == AgentPayment.account_id)
            .where(AgentPayment.agent_id == agent.id))
    found = {row[0]: tuple(row) for row in session.execute(
        base.where(AgentPayment.txn_date >= start, AgentPayment.txn_date < end))}
    wanted = sorted(set(txn_ids) - set(found))
    for offset in range(0, len(wanted), 500):
        chunk = wanted[offset:offset + 500]
        for row in session.execute(base.where(AgentPayment.txn_id.in_(chunk))):
            found[row[0]] = tuple(row)
    return sorted(found.values(), key=lambda row: (row[1], row[0]))
