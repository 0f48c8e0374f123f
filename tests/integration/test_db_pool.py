"""Pooled PostgreSQL connections: a connection that died while idle in the
pool (server restart, firewall) is replaced at checkout, not handed out."""

from sqlalchemy import text

from config import db
from tests.conftest import make_context


def test_a_connection_killed_while_idle_is_replaced(pg_url, monkeypatch):
    ctx = make_context(pg_url)
    try:
        with ctx.engine.connect() as conn:
            victim = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        # The connection is back in the pool; the server drops it.
        admin = make_context(pg_url)
        with admin.engine.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:pid)"),
                                {"pid": victim}).scalar_one()
        admin.dispose()
        monkeypatch.setattr(db, "IDLE_PING_S", 0.0)   # it has been idle "long enough"
        with ctx.engine.connect() as conn:
            assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() != victim
    finally:
        ctx.dispose()


def test_a_connection_used_a_moment_ago_is_not_pinged():
    """Under load a connection comes back within milliseconds: no round trip."""
    import time

    class Record:
        info = {"checked_in_at": time.monotonic()}

    class Unreachable:
        def cursor(self):
            raise AssertionError("pinged a connection that was just used")

    db._ping_if_idle(Unreachable(), Record(), None)   # returns without a ping

    class Fresh:
        info = {}   # opened for this checkout: never checked in

    db._ping_if_idle(Unreachable(), Fresh(), None)
    Record.info["checked_in_at"] -= db.IDLE_PING_S + 1
    try:
        db._ping_if_idle(Unreachable(), Record(), None)
    except db.DisconnectionError:
        pass   # an idle one is pinged; this fake fails the ping: replaced
    else:
        raise AssertionError("an idle connection was not pinged")
