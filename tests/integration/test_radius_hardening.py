"""Issue 13, RADIUS: counters beyond a signed bigint, a database outage,
bounded duplicate caches, Prometheus metrics. Real UDP sockets on
loopback, SQLite and PostgreSQL."""

import itertools
import threading
import logging
import socket
import time

import pytest
from sqlalchemy import select

from aaa import packet as wire
from aaa.client import access_request, accounting_request, blast, exchange
from aaa.models import Session as RadiusSession
from aaa.server import RadiusServer
from tests import factories
from tests.conftest import make_context

SECRET = b"hardening-secret"
_ids = itertools.count(1)


def _seed(ctx, logins=("bob",)):
    with ctx.Session() as session:
        account = factories.make_account(session)
        for login in logins:
            factories.make_service(session, account, login=login, password=f"pw-{login}")
        factories.make_nas(session, name="lo", address="127.0.0.0/8", secret=SECRET.decode())
        session.commit()


@pytest.fixture
def server_ctx(db_url):
    # A wide commit window: what the test sends at once lands in one batch.
    context = make_context(db_url, radius_batch_ms=150)
    yield context
    context.dispose()


@pytest.fixture
def radius(server_ctx):
    _seed(server_ctx)
    server = RadiusServer(server_ctx, host="127.0.0.1", auth_port=0, acct_port=0)
    server.start()
    yield server
    server.stop()


def _interim(session_id, **counters):
    pairs = [("Acct-Status-Type", "Interim-Update"), ("Acct-Session-Id", session_id),
             ("User-Name", "bob"), ("Acct-Session-Time", 60)]
    return pairs + [(name.replace("_", "-"), value) for name, value in counters.items()]


def _stored(ctx):
    with ctx.Session() as session:
        return {row.acct_session_id: (row.octets_in, row.octets_out)
                for row in session.scalars(select(RadiusSession))}


def _tracebacks(caplog):
    return [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


# -- counters at or above 2 ** 63 ----------------------------------------------


def test_a_counter_beyond_a_signed_bigint_is_a_counted_drop_and_spares_its_batch(
        radius, server_ctx, caplog):
    """Acct-Input-Gigawords = 0xFFFFFFFF is legal on the wire (RFC 2869) but
    folds to more than 2 ** 63 - 1 octets (9.2 EB in one session): the record
    is refused before it is queued, with a drop counted by reason, no
    traceback and no answer (RFC 2866: no answer unless recorded); the
    records sent with it are stored and answered; the largest counter that
    fits is stored exactly on both databases."""
    caplog.set_level(logging.INFO)
    bad = accounting_request(SECRET, 200, _interim(
        "huge", Acct_Input_Gigawords=0xFFFFFFFF, Acct_Input_Octets=0xFFFFFFFF))
    good = [accounting_request(SECRET, n, _interim(f"ok-{n}", Acct_Input_Octets=n))
            for n in range(10)]
    edge = accounting_request(SECRET, 10, _interim(
        "edge", Acct_Input_Gigawords=0x7FFFFFFF, Acct_Input_Octets=0xFFFFFFFF,
        Acct_Output_Gigawords=0x7FFFFFFF, Acct_Output_Octets=0xFFFFFFFF))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as nas:
        nas.bind(("127.0.0.1", 0))
        nas.settimeout(0.5)
        nas.sendto(bad, ("127.0.0.1", radius.acct_port))
        replies = blast(good + [edge], ("127.0.0.1", radius.acct_port), SECRET, deadline_s=10)
        assert len(replies) == 11
        for _ in range(3):      # the NAS retransmits: each copy is dropped the same way
            nas.sendto(bad, ("127.0.0.1", radius.acct_port))
        with pytest.raises(socket.timeout):
            nas.recvfrom(4096)
    assert not _tracebacks(caplog), [r.getMessage() for r in _tracebacks(caplog)]
    stored = _stored(server_ctx)
    assert "huge" not in stored
    assert {f"ok-{n}" for n in range(10)} <= set(stored)
    assert stored["edge"] == (2 ** 63 - 1, 2 ** 63 - 1)
    assert radius.drops["counter-out-of-range"] == 4
    assert radius.stats["commit_failures"] == 0
    lines = [r.getMessage() for r in caplog.records if "counter-out-of-range" in r.getMessage()]
    assert lines and "nas=lo" in lines[0] and "Acct-Input-Gigawords" in lines[0]


def test_a_record_the_database_refuses_is_dropped_alone_and_its_retransmits_write_nothing(
        radius, server_ctx, caplog, monkeypatch):
    """Defence in depth behind the parse check: a record that reaches the
    writer and is refused by the database (here: the counter check is
    switched off) is found by splitting its batch, dropped as
    commit-rejected and not answered; its batch-mates are stored and
    answered; its retransmits are refused from the duplicate cache without
    another write or traceback."""
    from aaa import accounting
    monkeypatch.setattr(accounting, "MAX_COUNTER", 2 ** 64, raising=False)
    caplog.set_level(logging.INFO)
    bad = accounting_request(SECRET, 200, _interim(
        "poison", Acct_Input_Gigawords=0xFFFFFFFF, Acct_Input_Octets=1))
    good = [accounting_request(SECRET, n, _interim(f"ok-{n}", Acct_Input_Octets=n))
            for n in range(16)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as nas:
        nas.bind(("127.0.0.1", 0))
        nas.settimeout(0.5)
        nas.sendto(bad, ("127.0.0.1", radius.acct_port))
        replies = blast(good, ("127.0.0.1", radius.acct_port), SECRET, deadline_s=10)
        assert len(replies) == 16
        with pytest.raises(socket.timeout):
            nas.recvfrom(4096)
        failures = radius.stats.get("commit_failures")
        for _ in range(3):
            nas.sendto(bad, ("127.0.0.1", radius.acct_port))
        with pytest.raises(socket.timeout):
            nas.recvfrom(4096)
    # One traceback (the first refusal), not one per retransmit.
    assert len([r for r in caplog.records if r.exc_info]) <= 1
    stored = _stored(server_ctx)
    assert "poison" not in stored and {f"ok-{n}" for n in range(16)} <= set(stored)
    assert radius.stats["acct_committed"] == 16
    assert radius.drops["commit-rejected"] == 4
    assert radius.stats["commit_failures"] == failures     # no write for a retransmit


# -- database outage -----------------------------------------------------------


class TcpProxy:
    """A TCP forwarder to PostgreSQL that the test can cut: open connections
    are reset and new ones closed at once, as when the database goes down."""

    def __init__(self, target):
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = True
        self._pairs = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def cut(self):
        self.up = False
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def restore(self):
        self.up = True

    def close(self):
        self.cut()
        self.listener.close()


class SqliteOutage:
    """SQLite has no server to lose: every statement fails as on an I/O
    error of the file while cut."""

    def __init__(self):
        from sqlalchemy import event
        from sqlalchemy.engine import Engine
        self.up = True
        self._event, self._engine = event, Engine
        event.listen(Engine, "before_cursor_execute", self._check)

    def _check(self, connection, *args):
        if not self.up and connection.dialect.name == "sqlite":
            import sqlite3
            raise sqlite3.OperationalError("disk I/O error")

    def cut(self):
        self.up = False

    def restore(self):
        self.up = True

    def close(self):
        self._event.remove(self._engine, "before_cursor_execute", self._check)


@pytest.fixture
def outage(db_url):
    """(server, database switch): a server whose directory TTL is 1 s and
    which answers from an expired view for 4 s more while the database is
    down."""
    from sqlalchemy.engine import make_url
    seed = make_context(db_url)
    _seed(seed, logins=("bob", "carol"))
    seed.dispose()
    if db_url.startswith("postgresql"):
        url = make_url(db_url)
        switch = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
        db_url = url.set(host="127.0.0.1", port=switch.port).render_as_string(
            hide_password=False)
    else:
        switch = SqliteOutage()
    context = make_context(db_url, radius_stale_view_s=4)
    server = RadiusServer(context, host="127.0.0.1", auth_port=0, acct_port=0)
    server.directory.ttl_s = 1.0
    server.start()
    try:
        yield server, switch
    finally:
        switch.restore()
        server.stop()
        context.dispose()
        switch.close()


def _login(server, login, timeout=1.0):
    request = access_request(SECRET, next(_ids) % 256, login, f"pw-{login}")
    started = time.monotonic()
    reply = exchange(request, ("127.0.0.1", server.auth_port), timeout=timeout)
    return (reply[0] if reply else None), time.monotonic() - started


def test_a_database_outage_is_served_from_the_last_view_without_tracebacks(
        outage, caplog):
    """The database goes away: logins the view holds are still accepted
    (past the TTL, within radius.stale_view_s), at once; what needs the
    database (an unknown login, accounting) gets no answer (RFC 2866), is
    never acknowledged and counted once it is stored after the outage; the
    log has no traceback and at most one line per reason per second."""
    server, database = outage
    caplog.set_level(logging.INFO, logger="aaa.server")
    assert _login(server, "bob")[0] == wire.ACCESS_ACCEPT
    database.cut()
    cut_at = time.monotonic()
    time.sleep(1.5)                     # past the TTL: the view is expired
    start = accounting_request(SECRET, 41, [("Acct-Status-Type", "Start"),
                                            ("Acct-Session-Id", "during"),
                                            ("User-Name", "carol")])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as nas:
        nas.bind(("127.0.0.1", 0))
        nas.settimeout(0.3)
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:   # a storm of accounting and unknown logins
            nas.sendto(start, ("127.0.0.1", server.acct_port))
            for n in range(20):
                nas.sendto(access_request(SECRET, n, f"ghost{n}", "x"),
                           ("127.0.0.1", server.auth_port))
            code, took = _login(server, "bob")
            assert code == wire.ACCESS_ACCEPT and took < 0.3
            time.sleep(0.05)
        with pytest.raises(socket.timeout):
            while True:         # nothing acknowledged while nothing is stored
                assert nas.recvfrom(4096)[0][0] != wire.ACCOUNTING_RESPONSE
    assert server.directory.stale_answers > 0
    assert server.drops.get("database-unavailable", 0) > 0
    # Past ttl + stale_view_s the view is not trusted any more.
    time.sleep(max(0.0, cut_at + 1.0 + 4.0 + 0.5 - time.monotonic()))
    assert _login(server, "bob", timeout=0.5)[0] is None
    elapsed = time.monotonic() - cut_at
    lines = [r for r in caplog.records if r.name == "aaa.server" and r.levelno >= logging.ERROR]
    assert not [r for r in lines if r.exc_info], "a traceback during the outage"
    reasons = {r.getMessage().split()[1] for r in lines}
    assert len(lines) <= len(reasons) * (elapsed + 2) * 2, [r.getMessage() for r in lines]
    assert not any(SECRET.decode() in r.getMessage() for r in caplog.records)

    database.restore()
    deadline = time.monotonic() + 15
    reply = None
    while reply is None and time.monotonic() < deadline:
        reply = exchange(start, ("127.0.0.1", server.acct_port), timeout=0.5)
    assert reply is not None and reply[0] == wire.ACCOUNTING_RESPONSE
    assert _login(server, "bob")[0] == wire.ACCESS_ACCEPT
    with server.ctx.Session() as session:
        rows = session.scalars(select(RadiusSession)).all()
    assert [(r.acct_session_id, r.account_id is not None) for r in rows] == [("during", True)]


# -- duplicate caches bounded by bytes ------------------------------------------


def _held_bytes(cache):
    return sum(len(entry[1]) + len(entry[2] or b"")
               for part in (cache._recent, cache._older) for entry in part.values())


def test_duplicate_caches_are_bounded_by_bytes(db_url):
    """radius.duplicate_cache_mb = 1: 600 requests of ~3.6 KiB (2 MiB) on
    each port leave at most 1 MiB held per cache; the newest are still
    answered from it."""
    context = make_context(db_url, radius_duplicate_cache_mb=1)
    _seed(context)
    big = [("Called-Station-Id", "x" * 250)] * 14
    auth = [access_request(SECRET, n % 256, "bob", "pw-bob", pairs=big) for n in range(600)]
    acct = [accounting_request(SECRET, n % 256, [("Acct-Status-Type", "Start"),
                                                 ("Acct-Session-Id", f"big-{n}"),
                                                 ("User-Name", "bob")] + big)
            for n in range(600)]
    server = RadiusServer(context, host="127.0.0.1", auth_port=0, acct_port=0).start()
    try:
        assert len(blast(auth, ("127.0.0.1", server.auth_port), SECRET)) == 600
        assert len(blast(acct, ("127.0.0.1", server.acct_port), SECRET)) == 600
        for cache in (server.auth_duplicates, server.acct_duplicates):
            assert _held_bytes(cache) <= (1 << 20)
            assert cache.bytes <= (1 << 20) + 8192
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as nas:
            nas.settimeout(2)
            for _ in range(2):
                nas.sendto(acct[0], ("127.0.0.1", server.acct_port))
                assert nas.recvfrom(4096)[0][0] == wire.ACCOUNTING_RESPONSE
        # The retransmit was answered from the cache: one write, not two.
        assert server.stats["acct_committed"] == 601
    finally:
        server.stop()
        context.dispose()


# -- Prometheus metrics ----------------------------------------------------------------


def _sample(text, name, **labels):
    from prometheus_client.parser import text_string_to_metric_families
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v
                                           for k, v in labels.items()):
                return sample.value
    return None


def test_metrics_count_requests_drops_and_commits(radius):
    from prometheus_client import CollectorRegistry, generate_latest

    from aaa.metrics import RadiusMetrics
    registry = CollectorRegistry()
    registry.register(RadiusMetrics(radius.snapshot))
    for password in ("pw-bob", "pw-bob", "wrong"):
        exchange(access_request(SECRET, next(_ids) % 256, "bob", password),
                 ("127.0.0.1", radius.auth_port))
    exchange(b"\x01\x01\x00\x30" + bytes(16), ("127.0.0.1", radius.auth_port),
             timeout=0.2)
    requests = [accounting_request(SECRET, n, _interim(f"m-{n}", Acct_Input_Octets=n))
                for n in range(3)]
    assert len(blast(requests, ("127.0.0.1", radius.acct_port), SECRET)) == 3
    text = generate_latest(registry).decode()
    assert _sample(text, "abonent_radius_requests_total", port="auth") == 4
    assert _sample(text, "abonent_radius_requests_total", port="acct") == 3
    assert _sample(text, "abonent_radius_auth_answers_total", result="accept") == 2
    assert _sample(text, "abonent_radius_auth_answers_total", result="reject") == 1
    assert _sample(text, "abonent_radius_drops_total", reason="malformed") == 1
    assert _sample(text, "abonent_radius_acct_committed_total") == 3
    commits = _sample(text, "abonent_radius_commits_total")
    assert commits >= 1
    assert _sample(text, "abonent_radius_commit_batch_size_count") == commits
    assert _sample(text, "abonent_radius_commit_batch_size_sum") == 3
    assert _sample(text, "abonent_radius_commit_seconds_count") == commits
    assert _sample(text, "abonent_radius_commit_seconds_bucket", le="+Inf") == commits
    assert _sample(text, "abonent_radius_queue_depth") == 0
    assert _sample(text, "abonent_radius_duplicate_cache_entries", port="auth") == 3


def _scrape(port):
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def test_workers_metrics_are_summed_and_a_dead_worker_is_counted(db_url):
    """`abonent serve radius --workers 2 --metrics-port P`: one scrape sums
    both workers; a worker killed is counted in worker_deaths, and what it
    had counted stays in the totals."""
    import os
    import signal

    from tests.conftest import free_tcp_port, free_udp_port
    from tests.serve_process import ServeProcess

    context = make_context(db_url)
    _seed(context)
    context.dispose()
    auth_port, acct_port, metrics_port = free_udp_port(), free_udp_port(), free_tcp_port()
    serve = ServeProcess(["radius", "--host", "127.0.0.1", "--auth-port", str(auth_port),
                          "--acct-port", str(acct_port), "--workers", "2",
                          "--metrics-port", str(metrics_port)],
                         {"ABONENT_DATABASE_URL": db_url}, ready="radius: 2 workers")
    try:
        sent = 0
        for n in range(40):
            for source in (f"127.0.0.{n % 8 + 1}",):
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as nas:
                    nas.bind((source, 0))
                    nas.settimeout(3)
                    nas.sendto(access_request(SECRET, n, "bob", "pw-bob"),
                               ("127.0.0.1", auth_port))
                    assert nas.recvfrom(4096)[0][0] == wire.ACCESS_ACCEPT
                    sent += 1
        time.sleep(1.5)     # the workers write their counters every second
        text = _scrape(metrics_port)
        assert _sample(text, "abonent_radius_requests_total", port="auth") == sent
        assert _sample(text, "abonent_radius_auth_answers_total", result="accept") == sent
        assert _sample(text, "abonent_radius_workers") == 2
        assert _sample(text, "abonent_radius_worker_deaths_total") == 0
        os.kill(serve.workers(2)[0], signal.SIGKILL)
        serve.wait_for("radius.worker_died")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            text = _scrape(metrics_port)
            if _sample(text, "abonent_radius_workers") == 2:
                break
            time.sleep(0.2)
        assert _sample(text, "abonent_radius_worker_deaths_total") == 1
        assert _sample(text, "abonent_radius_workers") == 2
        assert _sample(text, "abonent_radius_requests_total", port="auth") == sent
    finally:
        serve.stop()


# -- misses are handled off the receive threads --------------------------------


def test_a_login_added_after_start_is_answered_and_its_accounting_owned(radius, server_ctx):
    """Not in the preloaded view: the Access-Request is answered by the
    lookup thread (one read), the Accounting-Request gets its owner from
    the writer's one query per batch; neither waits in a receive thread."""
    with server_ctx.Session() as session:
        account = factories.make_account(session)
        factories.make_service(session, account, login="dave", password="pw-dave")
        session.commit()
        account_id = account.id
    assert _login(radius, "dave")[0] == wire.ACCESS_ACCEPT
    assert _login(radius, "nobody")[0] == wire.ACCESS_REJECT
    assert radius.stats["deferred"] >= 2
    radius.directory.invalidate()       # the owner is not cached either now
    reply = exchange(accounting_request(SECRET, 9, [
        ("Acct-Status-Type", "Start"), ("Acct-Session-Id", "late"), ("User-Name", "dave")]),
        ("127.0.0.1", radius.acct_port))
    assert reply is not None and reply[0] == wire.ACCOUNTING_RESPONSE
    with server_ctx.Session() as session:
        row = session.scalar(select(RadiusSession).where(RadiusSession.acct_session_id == "late"))
    assert row.account_id == account_id


def test_error_log_is_one_line_per_reason_per_second_with_a_count(caplog):
    from aaa.server import ErrorLog
    caplog.set_level(logging.INFO)
    errors = ErrorLog(interval_s=0.2)
    failure = RuntimeError("connection refused\nsecond line")
    for _ in range(500):
        errors.error("database-unavailable", "writer", failure)
        errors.error("nas-refresh-failed", "", failure)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "radius.error reason=database-unavailable writer error=RuntimeError: connection refused",
        "radius.error reason=nas-refresh-failed error=RuntimeError: connection refused"]
    time.sleep(0.25)
    errors.flush()
    assert sorted(r.getMessage() for r in caplog.records[2:]) == [
        "radius.error reason=database-unavailable repeated=499",
        "radius.error reason=nas-refresh-failed repeated=499"]
    assert errors.counts == {"database-unavailable": 500, "nas-refresh-failed": 500}


@pytest.mark.parametrize("gigawords, octets, refused", [
    (0x7FFFFFFF, 0xFFFFFFFF, False), (0x80000000, 0, True), (0xFFFFFFFF, 0xFFFFFFFF, True)])
@pytest.mark.parametrize("direction", ["Input", "Output"])
def test_parse_refuses_only_counters_beyond_a_signed_bigint(gigawords, octets, refused,
                                                            direction):
    import datetime as dt

    from aaa import accounting
    request = wire.decode(accounting_request(SECRET, 1, [
        ("Acct-Status-Type", "Stop"), ("Acct-Session-Id", "p"),
        (f"Acct-{direction}-Gigawords", gigawords), (f"Acct-{direction}-Octets", octets)]))
    if not refused:
        record = accounting.parse(request, 1, dt.datetime(2026, 1, 1))
        assert getattr(record, f"octets_{direction[:-3].lower()}") == 2 ** 63 - 1
        return
    with pytest.raises(wire.MalformedPacket) as raised:
        accounting.parse(request, 1, dt.datetime(2026, 1, 1))
    assert raised.value.drop_reason == "counter-out-of-range"
    assert f"Acct-{direction}-Gigawords {gigawords}" in raised.value.reason


@pytest.mark.peer
def test_radclient_gets_no_answer_for_a_counter_beyond_a_bigint_and_then_one(radius,
                                                                             server_ctx):
    """FreeRADIUS's radclient as the NAS: its retries of the impossible Stop
    are each dropped the same way; a Stop with counters that fit is stored."""
    import subprocess

    from tests.conftest import need_program
    program = need_program("radclient")

    def send(body, tries):
        return subprocess.run(
            [program, "-x", "-r", str(tries), "-t", "1", f"127.0.0.1:{radius.acct_port}",
             "acct", SECRET.decode()], input=body + "\n", capture_output=True, text=True,
            timeout=30)

    stop = ('User-Name = "bob", Acct-Status-Type = Stop, Acct-Session-Id = "rc-1", '
            'Acct-Session-Time = 60, Acct-Output-Octets = 7, ')
    refused = send(stop + "Acct-Input-Gigawords = 4294967295, Acct-Input-Octets = 1", 3)
    assert "Received Accounting-Response" not in refused.stdout + refused.stderr
    assert radius.drops["counter-out-of-range"] >= 2
    assert "rc-1" not in _stored(server_ctx)
    stored = send(stop + "Acct-Input-Gigawords = 2, Acct-Input-Octets = 1", 1)
    assert "Received Accounting-Response" in stored.stdout + stored.stderr, stored
    assert _stored(server_ctx)["rc-1"] == (2 * 2 ** 32 + 1, 7)
