"""Options a subscriber buys: turbo (speed × N for H hours), traffic packs.

Buying is a guarded debit (it cannot pass the credit limit) keyed by the
caller's request id, so a double-submitted form buys once. An option that
changes the speed (``rate_multiplier`` > 1) does not change the account's
profile (the balance ladder's verdict): it stacks on it in
``rating.profile.desired_profile``, so it outlives a suspension. Buying it
and its end bump the account's version and write the profile-change
outbox in the same transaction, so RADIUS caches and the enforcer hear of
it.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from rating import ledger, oplog, spending, validate
from rating.accounts import MAX_PREPAID_MB, DomainError
from rating.choices import OPTION_KINDS
from rating.validate import NotFound
from rating.models import Account, AccountOption, LedgerEntry, OptionType, ProfileChange
from rating.profile import ActiveOption


@dataclass(frozen=True)
class Purchase:
    option_id: int
    entry_id: int
    ends_at: dt.datetime
    created: bool


# Bounds of what an option type may be: a typo (10000 hours, ×1000) is
# refused rather than sold.
MAX_HOURS = 24 * 366
MAX_MULTIPLIER = 100
MAX_PER_MONTH = 1000
_CODE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
OPTION_FIELDS = ("name", "kind", "price", "duration_hours", "rate_multiplier", "traffic_mb",
                 "max_per_month")




def check_option_type(values: dict) -> dict:
    """An option type's fields checked and normalised (rating.validate for
    the name and the price); a DomainError names the first bad one."""
    out = dict(values)
    out["name"] = validate.name(values["name"], "option name", 100)
    if values["kind"] not in OPTION_KINDS:
        raise DomainError(f"option kind must be one of {', '.join(OPTION_KINDS)}")
    out["price"] = validate.amount(values["price"], "option price")
    out["duration_hours"] = validate.whole(values["duration_hours"], "duration (hours)", 1, MAX_HOURS)
    out["rate_multiplier"] = validate.whole(values["rate_multiplier"], "speed multiplier", 1,
                                    MAX_MULTIPLIER)
    out["traffic_mb"] = validate.whole(values["traffic_mb"], "traffic (MB)", 0, MAX_PREPAID_MB)
    out["max_per_month"] = validate.whole(values["max_per_month"], "purchases per month", 0,
                                  MAX_PER_MONTH)
    if out["kind"] == "traffic" and out["rate_multiplier"] != 1:
        raise DomainError("a traffic pack does not change the speed: its multiplier is 1")
    if out["kind"] == "turbo" and out["traffic_mb"]:
        raise DomainError("a turbo adds no traffic: give --traffic-mb to a traffic pack")
    return out


def create_option_type(session: Session, *, code: str, name: str, kind: str, price,
                       duration_hours: int = 24, rate_multiplier: int = 1,
                       traffic_mb: int = 0, max_per_month: int = 0,
                       actor: str = "admin") -> OptionType:
    """Put an option on sale (the CLI's ``option-type add``, the demo's seed)."""
    if not isinstance(code, str) or not _CODE.match(code):
        raise DomainError(f"option code must be 1-32 lower-case letters, digits, '_' or '-', "
                          f"not {code!r}")
    values = check_option_type(dict(name=name, kind=kind, price=price,
                                    duration_hours=duration_hours,
                                    rate_multiplier=rate_multiplier, traffic_mb=traffic_mb,
                                    max_per_month=max_per_month))
    if session.scalar(select(OptionType.id).where(OptionType.code == code)) is not None:
        raise DomainError(f"option {code!r} already exists")
    option = OptionType(code=code, **values)
    session.add(option)
    session.flush()
    oplog.record(session, account_id=None, actor=actor, action="option_type.add", code=code,
                 **values)
    return option


def find_option_type(session: Session, code: str) -> OptionType:
    option = session.scalar(select(OptionType).where(OptionType.code == code))
    if option is None:
        raise NotFound(f"option {code!r} does not exist")
    return option


def edit_option_type(session: Session, code: str, *, actor: str,
                     **changes) -> dict[str, tuple[str, str]]:
    """Change only the fields given; {field: (old, new)} also goes to the
    audit log. Options already bought keep what they were sold with (their
    end time); a new price or duration applies to the next purchase."""
    unknown = set(changes) - set(OPTION_FIELDS)
    if unknown:
        raise DomainError(f"unknown option field {sorted(unknown)[0]!r}")
    option = find_option_type(session, code)
    old = {f: getattr(option, f) for f in OPTION_FIELDS}
    new = check_option_type({**old, **changes})
    diff = {f: (str(old[f]), str(new[f])) for f in OPTION_FIELDS if old[f] != new[f]}
    if not diff:
        raise DomainError("nothing to change: give at least one new value")
    for field in diff:
        setattr(option, field, new[field])
    session.flush()
    oplog.record(session, account_id=None, actor=actor, action="option_type.edit", code=code,
                 **{f: f"{a} -> {b}" for f, (a, b) in diff.items()})
    return diff


def _bought_this_month(session: Session, account_id: int, option: OptionType,
                       now: dt.datetime) -> int:
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return session.scalar(select(func.count()).select_from(AccountOption).where(
        AccountOption.account_id == account_id, AccountOption.option_type_id == option.id,
        AccountOption.starts_at >= month_start)) or 0


def bought_this_month_by_type(session: Session, account_id: int,
                              now: dt.datetime) -> dict[int, int]:
    """{option type id: purchases this calendar month} of one account, as
    the monthly limit counts them (one grouped query for a whole catalogue)."""
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return dict(session.execute(
        select(AccountOption.option_type_id, func.count())
        .where(AccountOption.account_id == account_id, AccountOption.starts_at >= month_start)
        .group_by(AccountOption.option_type_id)).all())


def _check_limit(session: Session, account: Account, option: OptionType,
                 now: dt.datetime) -> None:
    if option.max_per_month and _bought_this_month(session, account.id, option,
                                                   now) >= option.max_per_month:
        raise DomainError(f"this option can be bought {option.max_per_month} "
                          f"time{'s' if option.max_per_month > 1 else ''} a month")


def active_options(session: Session, account_id: int, now: dt.datetime) -> list[AccountOption]:
    return list(session.scalars(select(AccountOption).where(
        AccountOption.account_id == account_id, AccountOption.status == "active",
        AccountOption.ends_at > now).order_by(AccountOption.ends_at)))


def _turbo_running(session: Session, account_id: int, now: dt.datetime) -> bool:
    return any(o.option_type.kind == "turbo" for o in active_options(session, account_id, now))


def running_speed_options(session: Session, now: dt.datetime,
                          accounts=None) -> dict[int, tuple[ActiveOption, ...]]:
    """Options that can change a speed (rate_multiplier > 1) not ended at
    ``now``, by account, as rating.profile.desired_profile takes them:
    every account's (None), or those of ``accounts`` (ids, or a SELECT of
    ids). RADIUS's cached view, the enforcer and the cabinet read them so."""
    query = (select(AccountOption.account_id, OptionType.code, OptionType.kind,
                    OptionType.rate_multiplier, AccountOption.starts_at, AccountOption.ends_at)
             .join(OptionType, OptionType.id == AccountOption.option_type_id)
             .where(AccountOption.status == "active", OptionType.rate_multiplier > 1,
                    AccountOption.ends_at > now))
    if accounts is not None:
        query = query.where(AccountOption.account_id.in_(accounts))
    found: dict[int, tuple[ActiveOption, ...]] = {}
    for owner, *fields in session.execute(query):
        found[owner] = found.get(owner, ()) + (ActiveOption(*fields),)
    return found


def on_sale(session: Session) -> list[OptionType]:
    """The option catalogue, turbos first, cheapest first."""
    return list(session.scalars(select(OptionType).order_by(
        OptionType.kind.desc(), OptionType.price, OptionType.code)))


def check(session: Session, account: Account, code: str, now: dt.datetime) -> OptionType:
    """A read-only check, so a page can say beforehand why an option cannot
    be bought; ``buy`` itself relies on the guarded debit for the money."""
    option = session.scalar(select(OptionType).where(OptionType.code == code))
    if option is None:
        raise DomainError("this option is not on sale")
    if account.state != "active":
        raise DomainError("options can be bought only on an active account")
    spending.check_extras(account, now)
    if option.kind == "turbo" and _turbo_running(session, account.id, now):
        raise DomainError("a turbo is already active")
    _check_limit(session, account, option, now)
    if account.balance - option.price < -account.credit_limit:
        raise DomainError("not enough money for this option")
    return option


def set_profile(session: Session, account: Account, profile: str, reason: str) -> bool:
    """Change the profile and write the outbox, in the caller's transaction."""
    if account.profile == profile:
        return False
    account.profile = profile
    touch(session, account, reason)
    return True


def touch(session: Session, account: Account, reason: str) -> None:
    """The account's network profile may have changed (an option, a tariff):
    bump its version and write the outbox, in the caller's transaction."""
    account.version += 1
    session.add(ProfileChange(account_id=account.id, profile=account.profile, reason=reason))


def buy(session: Session, account: Account, code: str, now: dt.datetime, *,
        request_id: str | None = None, actor: str = "subscriber") -> Purchase:
    option = session.scalar(select(OptionType).where(OptionType.code == code))
    if option is None:
        raise DomainError(f"option {code!r} does not exist")
    if account.state != "active":
        raise DomainError("options can be bought only on an active account")
    key = f"option:{account.id}:{code}:{request_id or uuid.uuid4().hex}"
    existing = session.scalar(select(LedgerEntry).where(
        LedgerEntry.idempotency_key == key))
    if existing is not None:
        # The same request again: report the purchase it made.
        bought = session.scalar(select(AccountOption).where(
            AccountOption.account_id == account.id, AccountOption.option_type_id == option.id)
            .order_by(AccountOption.id.desc()).limit(1))
        return Purchase(bought.id if bought else 0, existing.id,
                        bought.ends_at if bought else now, False)
    spending.check_extras(account, now)
    if option.kind == "turbo" and _turbo_running(session, account.id, now):
        raise DomainError("a turbo is already active")
    _check_limit(session, account, option, now)
    try:
        posting = ledger.post(session, account_id=account.id, amount=-option.price,
                              kind="option", key=key, author=actor,
                              memo=f"{option.name} for {option.duration_hours} h", guarded=True,
                              memo_code="turbo" if option.kind == "turbo" else "option",
                              memo_args={"name": option.name, "hours": option.duration_hours,
                                         "multiplier": option.rate_multiplier})
    except ledger.InsufficientFunds:
        raise DomainError("not enough money for this option") from None
    bought = AccountOption(account_id=account.id, option_type_id=option.id, starts_at=now,
                           ends_at=now + dt.timedelta(hours=option.duration_hours))
    session.add(bought)
    session.flush()
    session.refresh(account)
    if option.rate_multiplier > 1:
        touch(session, account, f"option:{code}")
    oplog.record(session, account_id=account.id, actor=actor, action="option.buy", code=code,
                 price=option.price, ends_at=bought.ends_at)
    return Purchase(bought.id, posting.entry_id, bought.ends_at, True)


def expire(session: Session, now: dt.datetime) -> int:
    """End options whose time is up; a speed option's end is a profile change."""
    ended = list(session.scalars(select(AccountOption).where(
        AccountOption.status == "active", AccountOption.ends_at <= now)))
    for option in ended:
        option.status = "expired"
        if option.option_type.rate_multiplier > 1:
            touch(session, session.get(Account, option.account_id), "option:expired")
        oplog.record(session, account_id=option.account_id, actor="scheduler",
                     action="option.expire", code=option.option_type.code)
    return len(ended)
