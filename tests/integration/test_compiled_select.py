"""config.db.CompiledSelect: the same rows as Connection.execute of the same
statement, on SQLite and PostgreSQL, on a Connection and in a Session."""

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import bindparam, select, text

from aaa.models import Session as NetworkSession
from cabinet import queries
from config.db import CompiledSelect
from rating.models import Account, CabinetUser
from tests.factories import make_account, make_nas, make_tariff

ACCOUNTS = Account.__table__
SESSIONS = NetworkSession.__table__


@pytest.fixture
def seeded(session):
    tariff = make_tariff(session, fee=Decimal("499.90"))
    with_tariff = make_account(session, balance=Decimal("12.30"), tariff=tariff.name)
    without = make_account(session, tariff=None)
    nas = make_nas(session)
    start = dt.datetime(2026, 3, 1, 12, 0, 0, 123456)
    for n in range(3):
        session.add(NetworkSession(
            nas_id=nas.id, acct_session_id=f"s{n}", username="u", account_id=with_tariff.id,
            framed_ip=None if n == 1 else f"100.64.0.{n}", started_at=start + dt.timedelta(hours=n),
            updated_at=start, stopped_at=None if n == 2 else start + dt.timedelta(hours=n, minutes=5),
            octets_in=2**40 + n, octets_out=n))
    session.add(CabinetUser(account_id=with_tariff.id, login="who", password_hash="x", role="owner"))
    session.commit()
    return with_tariff.id, without.id


def _plain(rows):
    return [tuple(row) for row in rows]


def test_rows_equal_those_of_execute(ctx, session, seeded):
    with_tariff, without = seeded
    statement = (select(*queries._ACCOUNT_COLUMNS).select_from(queries._ACCOUNT_JOINS)
                 .where(ACCOUNTS.c.id == bindparam("account_id")))
    fast = CompiledSelect(statement)
    with ctx.engine.connect() as conn:
        for account_id in (with_tariff, without, 10**6):
            expected = conn.execute(statement, {"account_id": account_id}).all()
            got = fast.all(conn, {"account_id": account_id})
            assert _plain(got) == _plain(expected)
            # The names of the statement's columns, as on a Row.
            assert [row._asdict() for row in got] == [row._asdict() for row in expected]
    row = fast.first(session, {"account_id": with_tariff})
    # Money comes back as Decimal with two places on both (kopecks on SQLite).
    assert row.balance == Decimal("12.30") and row.balance.as_tuple().exponent == -2
    assert row.fee == Decimal("499.90")
    assert fast.first(session, {"account_id": 10**6}) is None


def test_datetimes_limits_and_fixed_literals(ctx, session, seeded):
    with_tariff, _ = seeded
    statement = (select(SESSIONS.c.started_at, SESSIONS.c.stopped_at, SESSIONS.c.framed_ip,
                        SESSIONS.c.octets_in)
                 .where(SESSIONS.c.account_id == bindparam("account_id"),
                        SESSIONS.c.username == "u",   # a literal: a fixed parameter
                        SESSIONS.c.started_at >= bindparam("since"))
                 .order_by(SESSIONS.c.started_at.desc()).limit(bindparam("limit")))
    fast = CompiledSelect(statement)
    since = dt.datetime(2026, 3, 1, 13, 0)
    params = {"account_id": with_tariff, "since": since, "limit": 5}
    with ctx.engine.connect() as conn:
        expected = conn.execute(statement, params).all()
        got = fast.all(conn, params)
    assert _plain(got) == _plain(expected)
    assert [row.started_at for row in got] == [dt.datetime(2026, 3, 1, 14, 0, 0, 123456),
                                               dt.datetime(2026, 3, 1, 13, 0, 0, 123456)]
    assert got[0].stopped_at is None and got[1].framed_ip is None
    assert got[0].octets_in == 2**40 + 2
    assert len(fast.all(session, {**params, "limit": 1})) == 1
    with pytest.raises(KeyError):
        fast.all(session, {"account_id": with_tariff, "limit": 1})   # "since" missing


def test_a_dead_connection_is_invalidated_with_the_pools_older_ones(pg_url):
    """As Connection.execute does: after a disconnect, the pooled
    connections opened before it are not handed out again."""
    from tests.conftest import make_context

    ctx = make_context(pg_url)
    admin = make_context(pg_url)
    fast = CompiledSelect(select(ACCOUNTS.c.id).where(ACCOUNTS.c.id == bindparam("account_id")))
    pid = text("SELECT pg_backend_pid()")
    try:
        first, second = ctx.engine.connect(), ctx.engine.connect()
        victims = {first.execute(pid).scalar_one(), second.execute(pid).scalar_one()}
        first.close()
        second.close()   # both back in the pool, used a moment ago (no ping)
        with admin.engine.connect() as other:
            for victim in victims:
                other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": victim})
        with ctx.engine.connect() as conn:
            with pytest.raises(ctx.engine.dialect.loaded_dbapi.OperationalError):
                fast.all(conn, {"account_id": 1})
            assert conn.invalidated
            conn.rollback()
            assert fast.all(conn, {"account_id": 1}) == []   # reconnected
            assert conn.execute(pid).scalar_one() not in victims
        # The other dead one is not handed out either.
        with ctx.engine.connect() as conn:
            assert fast.all(conn, {"account_id": 1}) == []
            assert conn.execute(pid).scalar_one() not in victims
    finally:
        ctx.dispose()
        admin.dispose()


def test_session_autoflush_and_overridable_defaults(session, seeded):
    """(That the cursor events fire: test_cabinet_pages' autocommit test
    reads the dashboard's statements through them.)"""
    with_tariff, _ = seeded
    fast = CompiledSelect(select(ACCOUNTS.c.email).where(ACCOUNTS.c.id == bindparam("account_id")))
    account = session.get(Account, with_tariff)
    account.email = "pending@example.ru"   # not flushed yet
    assert fast.first(session, {"account_id": with_tariff}).email == "pending@example.ru"
    session.rollback()
    limited = CompiledSelect(select(SESSIONS.c.id).order_by(SESSIONS.c.id).limit(2))
    assert len(limited.all(session, {})) == 2
    assert len(limited.all(session, {"param_1": 1})) == 1   # .limit(2)'s bind, overridden
