"""Cached views the RADIUS server answers from: NAS clients and subscribers.

Both are read from the database and kept in memory, so that the steady state
does not query per packet (DESIGN: "the database is not hit per
Access-Request"). Several server nodes may run at once; each keeps its own
cache and re-reads what changed:

- NAS clients are re-read every ``refresh_s`` seconds (by the server's
  refresh thread), and at once (at most once a second) when a packet comes
  from an address no client matches.
- A subscriber entry is used for ``ttl_s`` seconds; after that one query
  re-reads it. ``refresh_changed`` re-reads the entries whose account's
  ``version`` moved, so a payment that lifts a throttle shows immediately.

The server's receive threads never wait for the database: they look up with
``load=False``, and a miss raises ``NotCached`` (the server hands the
datagram to a thread that may read, see aaa.server). While the database
cannot be read (a read failed, or the periodic full read has not succeeded
for ``ttl_s``), entries past their ``ttl_s`` are still served for
``stale_s`` more seconds: authentication goes on from the last good view
during an outage, for a bounded time.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import logging
import threading
import time
from dataclasses import dataclass

from sqlalchemy import Integer, any_, bindparam, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY

from aaa.authorize import Subscriber
from aaa.vendors import VENDORS, VendorSpec, nas_spec
from aaa.models import Nas, Service
from config.db import utcnow
from rating.catalogue import speed_windows
from rating.models import Account, ProfileChange, Tariff
from rating.options import running_speed_options

log = logging.getLogger(__name__)

# Source addresses remembered as matching a NAS prefix (a miss is not
# remembered: an unknown source must not fill memory).
MATCHED_LIMIT = 65_536

# Up to this many cached accounts, their versions are compared every second.
VERSION_CHECK_LIMIT = 20_000


class NotCached(LookupError):
    """The answer needs a database read, and the caller may not make one."""


@dataclass(frozen=True)
class NasClient:
    id: int
    name: str
    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    secret: bytes
    vendor: str
    require_message_authenticator: str
    limit_proxy_state: str
    spec: VendorSpec = VENDORS["generic"]
    # Secret rotation: the previous secret, accepted on incoming requests
    # until ``previous_until`` (time.time()), so the BRAS can be changed
    # over without an outage.
    previous_secret: bytes | None = None
    previous_until: float = 0.0

    def __repr__(self) -> str:  # never show the secret
        return f"NasClient({self.name!r}, {self.network})"

    def in_grace(self) -> bool:
        return self.previous_secret is not None and time.time() < self.previous_until


def _previous_secret(row) -> tuple[bytes | None, float]:
    if not row.previous_secret or row.previous_secret_until is None:
        return None, 0.0
    until = row.previous_secret_until.replace(tzinfo=dt.timezone.utc).timestamp()
    return row.previous_secret.encode(), until


class NasTable:
    def __init__(self, sessionmaker, refresh_s: float = 10.0):
        self._sessionmaker = sessionmaker
        self._refresh_s = refresh_s
        self._exact: dict[str, NasClient] = {}
        self._prefixes: list[NasClient] = []  # longest prefix first
        # Source address -> the prefix client it matched: a NAS sends from
        # one address, and ipaddress parsing costs more than the rest of
        # the lookup. Replaced with the table; bounded.
        self._matched: dict[str, NasClient] = {}
        self._loaded_at = 0.0
        self._miss_reload_at = 0.0
        self._lock = threading.Lock()
        # FreeRADIUS "auto": once a client has sent Message-Authenticator,
        # it is required from that client from then on.
        self.seen_message_authenticator: set[int] = set()
        self.reload()

    def reload(self) -> None:
        with self._sessionmaker() as session:
            rows = session.scalars(select(Nas)).all()
        exact, prefixes = {}, []
        # An unchanged NAS keeps its client object: what is derived from it
        # (aaa.fastpath's table of Accepts) is kept for that object.
        previous = {client.id: client for client in [*self._exact.values(), *self._prefixes]}
        for row in rows:
            try:
                network = ipaddress.ip_network(row.address.strip(), strict=False)
            except ValueError:
                log.error("radius.nas_bad_address nas=%s address=%r", row.name, row.address)
                continue
            client = NasClient(row.id, row.name, network, row.secret.encode(), row.vendor,
                               row.require_message_authenticator, row.limit_proxy_state,
                               nas_spec(row), *_previous_secret(row))
            if previous.get(client.id) == client:
                client = previous[client.id]
            if network.num_addresses == 1:
                exact[str(network.network_address)] = client
            else:
                prefixes.append(client)
        prefixes.sort(key=lambda c: c.network.prefixlen, reverse=True)
        with self._lock:
            self._exact, self._prefixes, self._matched = exact, prefixes, {}
            self._loaded_at = time.monotonic()

    def _find(self, address: str) -> NasClient | None:
        client = self._exact.get(address)
        if client is not None:
            return client
        matched = self._matched
        client = matched.get(address)
        if client is not None or not self._prefixes:
            return client
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return None
        for candidate in self._prefixes:
            if ip.version == candidate.network.version and ip in candidate.network:
                if len(matched) < MATCHED_LIMIT:
                    matched[address] = candidate
                return candidate
        return None

    def refresh_if_due(self) -> None:
        """Called from the server's refresh thread, never the packet path."""
        if time.monotonic() - self._loaded_at > self._refresh_s:
            self.reload()

    def lookup(self, address: str, load: bool = True) -> NasClient | None:
        """The client for a source address. An unknown address re-reads the
        table at once (at most once a second); with ``load=False`` that
        read is the caller's to arrange: NotCached."""
        client = self._find(address)
        if client is None:
            now = time.monotonic()
            if now - self._miss_reload_at > 1.0:
                if not load:
                    raise NotCached(address)
                self._miss_reload_at = now
                self.reload()
                client = self._find(address)
        return client


def _subscriber_query():
    # Plain columns, not ORM entities: the periodic full read of every
    # service is several times cheaper this way.
    return (select(Service.id, Service.kind, Account.id, Account.number, Service.login,
                   Service.password, Service.mac, Service.circuit_id, Service.static_ipv4,
                   Service.pool, Account.state, Account.profile,
                   func.coalesce(Tariff.rate_down_kbps, 0), func.coalesce(Tariff.rate_up_kbps, 0),
                   func.coalesce(Tariff.negative_rate_kbps, 0), Account.version,
                   Service.ipv6_prefix, Account.tariff_id, Account.limit_throttled_until)
            .join(Account, Account.id == Service.account_id)
            .outerjoin(Tariff, Tariff.id == Account.tariff_id)
            .where(Service.active.is_(True)))


def _versions_of(ids: list[int], session):
    """SELECT id, version for these accounts. On PostgreSQL the ids travel
    as ONE array parameter: an IN list of thousands of bind parameters is
    compiled by SQLAlchemy and parsed by psycopg afresh every second (it
    was a fifth of a RADIUS worker's time with 5,000 cached accounts)."""
    statement = select(Account.id, Account.version)
    if session.get_bind().dialect.name == "postgresql":
        return statement.where(Account.id == any_(bindparam("ids", ids,
                                                            type_=ARRAY(Integer))))
    return statement.where(Account.id.in_(ids))


_VERSION_TOTAL = text(
    "SELECT count(*), coalesce(sum(version), 0) FROM accounts "
    "WHERE id = ANY(string_to_array(:ids, ',')::bigint[])")


def _versions_unchanged(held: dict[int, int], session) -> bool:
    """PostgreSQL: one row tells whether any of these accounts changed.

    An account's version only ever grows, so the accounts' count and the
    sum of their versions equal what the cache holds exactly when none of
    them changed or went away. The ids travel as one comma-joined string:
    psycopg's array dumper and 5,000 rows back through SQLAlchemy cost a
    RADIUS worker ~20 ms of GIL every second, the tail of its latency.
    On SQLite (one small node) the versions are always read."""
    if session.get_bind().dialect.name != "postgresql":
        return False
    count, total = session.execute(
        _VERSION_TOTAL, {"ids": ",".join(map(str, held))}).one()
    return count == len(held) and total == sum(held.values())


def _view(*row, options: dict[int, tuple] | None = None,
          windows: dict[int, tuple] | None = None) -> Subscriber:
    (service_id, kind, account_id, number, login, password, mac, circuit_id, static_ipv4, pool,
     state, profile, down, up, negative, version, ipv6_prefix, tariff_id, slowed) = row
    return Subscriber(service_id=service_id, kind=kind, account_id=account_id,
                      account_number=number, login=login, password=password, mac=mac,
                      circuit_id=circuit_id, static_ipv4=static_ipv4, pool=pool,
                      account_state=state, profile=profile or "normal", rate_down_kbps=down,
                      rate_up_kbps=up, negative_rate_kbps=negative, version=version,
                      ipv6_prefix=ipv6_prefix, options=(options or {}).get(account_id, ()),
                      windows=(windows or {}).get(tariff_id, ()),
                      limit_throttled_until=slowed)


class SubscriberDirectory:
    def __init__(self, sessionmaker, ttl_s: float = 30.0, stale_s: float = 3600.0):
        self._sessionmaker = sessionmaker
        self.ttl_s = ttl_s
        # How long past ttl_s an entry may still answer while the database
        # cannot be read (0: never).
        self.stale_s = stale_s
        # key ("login", value) / ("mac", value) / ("circuit", value)
        #   -> (Subscriber | None, loaded_at)
        self._cache: dict[tuple[str, str], tuple[Subscriber | None, float]] = {}
        # How many of its entries are None (names found unknown), so that
        # refresh_changed knows how many views it holds without a walk.
        # Updated by several threads without a lock: it may drift by a few
        # and is counted afresh at every full read.
        self._unknown = 0
        # Moves whenever a view of a subscriber is replaced or dropped (not
        # when one is added): what was derived from views (aaa.fastpath)
        # is void when it moves.
        self.generation = 0
        self._last_change_id: int | None = None
        # The tariffs' speed windows, read with each full read (a tariff
        # edit shows within a refresh, as its speeds do) and at most every
        # ttl_s by the single reads between.
        self._windows: dict[int, tuple] = {}
        self._windows_read_at = 0.0
        # Health of the database as this cache saw it: the last full read
        # that succeeded (monotonic; 0: none yet), and whether the last read
        # of any kind failed.
        self.preloaded_at = 0.0
        self.failing = False
        self.stale_answers = 0

    @contextlib.contextmanager
    def _reading(self):
        """A session for one read; a failure marks the database failing
        (cleared by the next read that succeeds)."""
        try:
            with self._sessionmaker() as session:
                yield session
        except BaseException:
            self.failing = True
            raise
        self.failing = False

    def unavailable(self, now: float | None = None) -> bool:
        """The database is not answering: a read failed, or the periodic full
        read has not succeeded for ttl_s (it may be hanging)."""
        if self.failing:
            return True
        now = time.monotonic() if now is None else now
        return bool(self.preloaded_at) and now - self.preloaded_at > self.ttl_s

    def view_age(self) -> float:
        """Seconds since the last full read succeeded (0 before the first)."""
        return time.monotonic() - self.preloaded_at if self.preloaded_at else 0.0

    def __len__(self) -> int:
        return len(self._cache)

    def preload(self) -> int:
        """Read every active service at once (start-up, and the periodic full
        refresh), so that no Access-Request waits for a query."""
        with self._reading() as session:
            # Read the outbox position first: a change committed while the
            # rows are read is then seen again by refresh_changed, not lost.
            last_change_id = session.scalar(select(func.coalesce(func.max(ProfileChange.id), 0)))
            rows = session.execute(_subscriber_query()).all()
            options = running_speed_options(session, utcnow())
            self._windows = speed_windows(session)
        now = self.preloaded_at = time.monotonic()
        if self._last_change_id is None or last_change_id > self._last_change_id:
            self._last_change_id = last_change_id
        fresh = {}
        for row in rows:
            view = _view(*row, options=options, windows=self._windows)
            for kind, value in (("login", view.login), ("mac", view.mac),
                                ("circuit", view.circuit_id)):
                if value:
                    fresh[(kind, value)] = (view, now)
        self._cache = fresh
        self._unknown = 0
        self.generation += 1
        return len(rows)

    def _windows_now(self, session) -> dict[int, tuple]:
        now = time.monotonic()
        if now - max(self._windows_read_at, self.preloaded_at) >= self.ttl_s:
            self._windows = speed_windows(session)
            self._windows_read_at = now
        return self._windows

    def _cached(self, key: tuple[str, str], now: float):
        """(True, entry) if the cache may answer for ``key`` now, else (False, None)."""
        entry = self._cache.get(key)
        if entry is None:
            return False, None
        age = now - entry[1]
        if age < self.ttl_s:
            return True, entry[0]
        if age < self.ttl_s + self.stale_s and self.unavailable(now):
            self.stale_answers += 1
            return True, entry[0]
        return False, None

    def _remember(self, key: tuple[str, str], found: Subscriber | None, now: float) -> None:
        # Unknown names are cached briefly only: a service added a moment
        # ago must log in on the NAS's next try.
        held = self._cache.get(key)
        self._cache[key] = (found, now if found is not None else now - self.ttl_s + 1.0)
        self._unknown += (found is None) - (held is not None and held[0] is None)
        if held is not None and held[0] is not None:
            self.generation += 1

    def fresh_until(self, key: tuple[str, str], view: Subscriber) -> float | None:
        """When ``view``, held for ``key`` and within its TTL, stops
        answering without a read (monotonic); None if the cache holds
        another view for ``key``, none, or this one past its TTL. Counts
        nothing (unlike a lookup answered from a stale view)."""
        entry = self._cache.get(key)
        if entry is None or entry[0] is not view:
            return None
        expires = entry[1] + self.ttl_s
        return expires if time.monotonic() < expires else None

    def _get(self, key: tuple[str, str], column, load: bool = True) -> Subscriber | None:
        entry = self._cache.get(key)
        now = time.monotonic()
        if entry is not None and now - entry[1] < self.ttl_s:
            return entry[0]     # the steady state, kept to these three lines
        known, found = self._cached(key, now)
        if known:
            return found
        if not load:
            raise NotCached(key)
        with self._reading() as session:
            row = session.execute(_subscriber_query().where(column == key[1])).first()
            options = (running_speed_options(session, utcnow(), [row[2]])
                       if row is not None else None)
            windows = self._windows_now(session)
        found = _view(*row, options=options, windows=windows) if row is not None else None
        self._remember(key, found, now)
        return found

    def by_login(self, login: str, load: bool = True) -> Subscriber | None:
        return self._get(("login", login), Service.login, load)

    def by_mac(self, mac: str, load: bool = True) -> Subscriber | None:
        return self._get(("mac", mac), Service.mac, load)

    def by_circuit_id(self, circuit_id: str, load: bool = True) -> Subscriber | None:
        return self._get(("circuit", circuit_id), Service.circuit_id, load)

    def by_logins(self, logins) -> dict[str, Subscriber | None]:
        """Several logins at once: what the cache holds, the rest in one
        query per thousand (the accounting writer resolves a batch's
        owners so)."""
        now = time.monotonic()
        found: dict[str, Subscriber | None] = {}
        missing = []
        for login in set(logins):
            known, subscriber = self._cached(("login", login), now)
            if known:
                found[login] = subscriber
            else:
                missing.append(login)
        for start in range(0, len(missing), 1000):
            chunk = missing[start:start + 1000]
            with self._reading() as session:
                rows = session.execute(_subscriber_query().where(Service.login.in_(chunk))).all()
                options = running_speed_options(session, utcnow(), [row[2] for row in rows])
                windows = self._windows_now(session)
            views = {view.login: view for view in (_view(*row, options=options, windows=windows)
                                                   for row in rows)}
            for login in chunk:
                found[login] = views.get(login)
                self._remember(("login", login), found[login], now)
        return found

    def invalidate(self) -> None:
        self._cache.clear()
        self._unknown = 0
        self.generation += 1

    def _known(self) -> list[Subscriber]:
        # list(): the RADIUS threads add entries meanwhile.
        return [entry[0] for entry in list(self._cache.values()) if entry[0] is not None]

    def refresh_changed(self) -> int:
        """Drop cached entries whose account changed; returns how many.

        Two signals: the ``profile_changes`` outbox (rating writes a row in
        the transaction that changes a profile; read by id, cheap at any
        size), and, for caches small enough to ask about every account at
        once, ``accounts.version``. A big cache relies on the outbox and on
        the periodic full re-read (``preload``).

        A big cache is not copied to find out that nothing changed: every
        second, a copy of 100,000 entries was a tenth of a RADIUS worker's
        CPU under load (bench/radius_mix.py, py-spy). It is walked only
        when the outbox names accounts."""
        changed: set[int] = set()
        with self._reading() as session:
            if self._last_change_id is None:
                self._last_change_id = session.scalar(
                    select(func.coalesce(func.max(ProfileChange.id), 0)))
            rows = session.execute(
                select(ProfileChange.id, ProfileChange.account_id)
                .where(ProfileChange.id > self._last_change_id)
                .order_by(ProfileChange.id)).all()
            for change_id, account_id in rows:
                changed.add(account_id)
                self._last_change_id = change_id
            # The limit is on views held, as it always was; names found
            # unknown (a burst of them) do not count.
            if len(self._cache) - self._unknown <= VERSION_CHECK_LIMIT:
                known = self._known()
                held = {sub.account_id: sub.version for sub in known}
                if held and not _versions_unchanged(held, session):
                    versions = dict(session.execute(_versions_of(sorted(held), session)).all())
                    changed.update(sub.account_id for sub in known
                                   if versions.get(sub.account_id) != sub.version)
        if not changed:
            return 0
        stale = [key for key, (sub, _) in list(self._cache.items())
                 if sub is not None and sub.account_id in changed]
        for key in stale:
            self._cache.pop(key, None)
        if stale:
            self.generation += 1
        return len(stale)
