"""Two collectors behind one exporter address (issue 19): an export packet
one of them counted is not counted again when a copy reaches the other.

Each collector learns the packets the others stored from the database
(collector_replay_sets) while it runs, not only when it starts."""

from __future__ import annotations

from contextlib import contextmanager

from sqlalchemy import func, select

from collector.models import TrafficRollup
from collector.server import CollectorServer
from tests.conftest import make_context
from tests.integration.test_collector_spool import _accounts, _exports, _send, _stored_bytes


@contextmanager
def _two_collectors(pg_url, tmp_path, hold_seconds: float | None = None):
    """Two running collectors on one database, each with a data directory
    of its own (the second holding new exporters ``hold_seconds``); yields
    (ctx of the first, first, second)."""
    ctx_a = make_context(pg_url, data_dir=tmp_path / "a")
    ctx_b = make_context(pg_url, data_dir=tmp_path / "b")
    _accounts(ctx_a)
    first = CollectorServer(ctx_a, "127.0.0.1", 0, flush_seconds=3600, write_stats=False)
    second = CollectorServer(ctx_b, "127.0.0.1", 0, flush_seconds=3600, write_stats=False,
                             hold_seconds=hold_seconds)
    first.origin, second.origin = "node-a", "node-b"
    try:
        first.start()
        second.start()
        yield ctx_a, first, second
    finally:
        first.stop()
        second.stop()
        ctx_a.dispose()
        ctx_b.dispose()


def test_a_replay_reaching_the_other_collector_is_not_counted_twice(pg_url, tmp_path):
    """PostgreSQL only: several collector hosts need a database server (on
    SQLite sync_peers does nothing)."""
    packets, total, _flows = _exports(1, 20, salt=3)
    more, more_total, _ = _exports(21, 5, salt=4)
    with _two_collectors(pg_url, tmp_path) as (ctx_a, first, second):
        _send(first.port, packets)
        _wait(lambda: first.pipeline.counters["packets"] >= len(packets))
        assert first.flush() > 0
        assert _stored_bytes(ctx_a) == total
        # The exporter fails over to the second collector and replays what
        # it sent (and sends on): the copies are known, the new ones counted.
        assert second.sync_peers() == len(packets)
        _send(second.port, packets + more)
        _wait(lambda: second.pipeline.counters["packets"]
              + second.pipeline.counters["replayed_packets"] >= len(packets) + len(more))
        second.flush()
        assert second.pipeline.counters["replayed_packets"] == len(packets)
        assert _stored_bytes(ctx_a) == total + more_total
        # And back: the first learns the second's packets.
        assert first.sync_peers() == len(more)
        _send(first.port, more)
        _wait(lambda: first.pipeline.counters["replayed_packets"] >= len(more))
        first.flush()
        with ctx_a.Session() as session:
            assert session.scalar(select(func.sum(TrafficRollup.bytes))) == total + more_total


def _wait(condition, timeout: float = 10.0) -> None:
    import time
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_copy_that_comes_before_the_first_collector_stored_it_waits(pg_url, tmp_path):
    """An exporter that fails over and re-sends its last datagrams at once:
    the copies reach the second collector while the first still holds the
    originals in memory. With collector.failover_hold_seconds the second
    holds a newly arrived exporter's datagrams that long, and counts them
    after a peer sync that knows the first one's flush: nothing twice."""
    packets, total, _flows = _exports(1, 20, salt=5)
    more, more_total, _ = _exports(21, 5, salt=6)
    with _two_collectors(pg_url, tmp_path, hold_seconds=1.0) as (ctx_a, first, second):
        _send(first.port, packets)
        _wait(lambda: first.pipeline.counters["packets"] >= len(packets))
        # Not flushed yet: the copies and the new datagrams reach the second.
        _send(second.port, packets + more)
        _wait(lambda: second.stats()["held_packets"] == len(packets) + len(more))
        assert second.pipeline.counters["packets"] == 0
        assert second.release_held() == 0          # not yet held long enough
        assert first.flush() > 0
        _wait(lambda: second.stats()["held_packets"] == 0, timeout=10.0)   # its own sync
        second.flush()
        assert second.pipeline.counters["replayed_packets"] == len(packets)
        assert second.pipeline.counters["packets"] == len(more)
        assert _stored_bytes(ctx_a) == total + more_total


def test_a_stopping_collector_counts_what_it_held(pg_url, tmp_path):
    ctx = make_context(pg_url, data_dir=tmp_path)
    _accounts(ctx)
    server = CollectorServer(ctx, "127.0.0.1", 0, flush_seconds=3600, write_stats=False,
                             hold_seconds=60.0)
    packets, total, _flows = _exports(1, 10, salt=8)
    try:
        server.start()
        _send(server.port, packets)
        _wait(lambda: server.stats()["held_packets"] == len(packets))
        server.stop()
        assert _stored_bytes(ctx) == total
    finally:
        server.stop()
        ctx.dispose()
