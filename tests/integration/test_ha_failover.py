"""Several hosts and a standby that takes over (issue 19).

Hosts are network namespaces made by the test (tests/ha_lab.py): a NAS
and two RADIUS nodes on one bridge, whose own address is the database
host. PostgreSQL runs there twice: a primary and a synchronous streaming
standby. Both RADIUS nodes are real ``abonent serve radius`` processes
given the two clusters as a libpq host list with
``target_session_attrs=read-write``; the NAS is ``abonent nas-sim`` with
both servers configured, failing over when one does not answer. Each
RADIUS host runs an ``abonent serve scheduler`` as well, and node 2's host
a collector the NAS exports NetFlow to (flushing every second).

The run: the NAS brings its subscribers online through node 1; node 1's
link is cut (the NAS fails over to node 2) and restored (the NAS comes
back); the primary is killed under the accounting load and the standby
promoted; node 1 is cut again, so that node 2 too must write to the new
primary; the NAS stops every session. Then what the new primary holds
must equal what the NAS had acknowledged, session by session, and the
RADIUS usage rolled up from it must equal the NAS's totals: nothing
acknowledged lost, nothing counted twice, and no node restarted. The
schedulers' fee run charged every account once (on the old primary), and
a fee run on the new primary charges nothing again. The NetFlow rollups
equal the bytes the NAS exported, although flushes failed meanwhile.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select, text

from aaa import accounting, client
from aaa.models import Session as RadiusSession
from aaa.server import database_unavailable
from collector import radius_usage
from collector.models import TrafficRollup
from config.db import utcnow
from rating import jobs
from rating.models import Account, LedgerEntry
from config.migrate import upgrade
from tests.conftest import free_tcp_port, make_context
from tests.factories import make_account, make_nas, make_service
from tests.ha_lab import PG_BIN, Lan, PgPair, namespaces_possible
from tests.serve_process import ROOT, ServeProcess

SUBSCRIBERS = 40
SECRET = "ha-secret"
# Seconds after the NAS brought its sessions up.
CUT_1, RESTORE_1, PROMOTE, CUT_2, DURATION = 3.0, 6.5, 9.0, 12.5, 15.5


@pytest.fixture
def lab():
    reason = namespaces_possible()
    if reason:
        pytest.skip(reason)
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"PostgreSQL 15 server programs are not in {PG_BIN}")
    lan = Lan(["nas", "radius1", "radius2"])
    ports = [free_tcp_port()]
    while len(ports) < 2:
        port = free_tcp_port()
        if port not in ports:
            ports.append(port)
    try:
        pair = PgPair(tuple(ports), listen=lan.host,
                      clients=f"{lan.prefix}.0/24")
    except BaseException:
        lan.close()
        raise
    yield lan, pair
    pair.close()
    lan.close()


def _seed(url: str, nas_address: str, probe_address: str) -> list[tuple[str, str]]:
    ctx = make_context(url)
    try:
        upgrade(ctx.engine)
        logins = []
        with ctx.Session() as session:
            make_nas(session, name="bras-1", address=nas_address, secret=SECRET)
            make_nas(session, name="probe", address=probe_address, secret=SECRET)
            for number in range(SUBSCRIBERS):
                account = make_account(session, balance="1000.00", number=f"HA{number:05d}")
                service = make_service(session, account, login=f"ha{number}",
                                       password=f"pw-{number}",
                                       static_ipv4=f"100.64.19.{number + 1}")
                logins.append((service.login, f"pw-{number}"))
            session.commit()
        return logins
    finally:
        ctx.dispose()


def _probe(server: str, session_id: str) -> bool:
    """One Accounting Start to ``server``, answered within a few tries."""
    pairs = [("User-Name", "ha0"), ("Acct-Status-Type", "Start"),
             ("Acct-Session-Id", session_id)]
    for identifier in range(10):
        request = client.accounting_request(SECRET.encode(), identifier, pairs)
        reply = client.exchange(request, (server, 1813), timeout=1.0)
        if reply is not None and client.reply_valid(reply, request, SECRET.encode()):
            return True
    return False


def _at(started: float, offset: float) -> None:
    time.sleep(max(0.0, started + offset - time.monotonic()))


def test_nas_fails_over_between_nodes_and_the_standby_takes_over(lab, tmp_path):
    lan, pair = lab
    logins = _seed(pair.url("postgres", pair.primary, host="127.0.0.1", read_write=False),
                   lan.addresses["nas"], lan.host)
    pair.add_standby()
    assert pair.replication_state() == "sync"
    # A node whose connection reaches a standby (here: a DSN naming only
    # it) is refused its write as read-only; that counts as the database
    # being unavailable (retry, never split the batch and drop records),
    # and the connection is thrown away, not handed out again.
    standby_only = make_context(pair.url("postgres", pair.standby, host="127.0.0.1",
                                         read_write=False))
    record = accounting.AcctRecord(nas_id=1, status=accounting.START, event_time=utcnow(),
                                   acct_session_id="probe-1", username="probe")
    pids = []
    for write in ("batch", "plain"):    # on the driver's cursor, then through SQLAlchemy
        with pytest.raises(Exception) as refused:
            with standby_only.engine.begin() as connection:
                pids.append(connection.exec_driver_sql("SELECT pg_backend_pid()").scalar())
                if write == "batch":
                    accounting.apply_batch(connection, [record])
                else:
                    connection.execute(text("DELETE FROM sessions WHERE false"))
        error = refused.value
        assert getattr(getattr(error, "orig", error), "sqlstate", None) == "25006"
        assert database_unavailable(error)
    with standby_only.engine.connect() as connection:
        pids.append(connection.exec_driver_sql("SELECT pg_backend_pid()").scalar())
    assert len(set(pids)) == 3, pids     # each refused connection was thrown away
    # The nodes' DSN: both clusters, the writable one wins.
    url = pair.url("postgres", pair.primary, pair.standby)
    env = {"ABONENT_DATABASE_URL": url, "ABONENT_DATA_DIR": str(tmp_path)}
    nodes = {}
    try:
        # On each RADIUS host a scheduler too; all four start at once.
        with ThreadPoolExecutor(5) as starting:
            for node in ("radius1", "radius2"):
                nodes[node] = starting.submit(
                    ServeProcess, ["radius", "--host", lan.addresses[node], "--auth-port",
                                   "1812", "--acct-port", "1813", "--workers", "1"],
                    env, ready="radius: auth on", prefix=lan.exec_prefix(node))
                nodes[f"scheduler-{node}"] = starting.submit(
                    ServeProcess, ["scheduler"], env, ready="Scheduler started",
                    prefix=lan.exec_prefix(node))
            # The NAS exports NetFlow to a collector on node 2's host,
            # flushing every second: flushes fail while there is no primary.
            nodes["collector"] = starting.submit(
                ServeProcess, ["collector", "--host", lan.addresses["radius2"], "--port",
                               "2055", "--workers", "1", "--flush-seconds", "1"],
                env, ready="collector: listening", prefix=lan.exec_prefix("radius2"))
            nodes = {node: future.result() for node, future in nodes.items()}
        pids = {node: process.process.pid for node, process in nodes.items()}
        report = tmp_path / "nas.json"
        users = [arg for login, password in logins for arg in ("--user", f"{login}:{password}")]
        nas = subprocess.Popen(
            [*lan.exec_prefix("nas"), sys.executable, "-m", "scripts.cli", "nas-sim", *users,
             "--secret", SECRET, "--radius", lan.addresses["radius1"],
             "--radius", lan.addresses["radius2"], "--coa-port", "0", "--interim", "1",
             "--timeout", "1", "--dead-time", "2", "--duration", str(DURATION),
             "--stop-tries", "30", "--report", str(report),
             "--collector", f"{lan.addresses['radius2']}:2055"],
            cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        try:
            line = nas.stdout.readline()
            assert f"{SUBSCRIBERS} of {SUBSCRIBERS} sessions up" in line, \
                line + nas.stderr.read()
            started = time.monotonic()
            wall_started = time.time()
            _at(started, CUT_1)
            lan.cut("radius1")
            _at(started, RESTORE_1)
            lan.restore("radius1")
            _at(started, PROMOTE)
            pair.primary.stop("immediate")     # a crash: no shutdown checkpoint
            pair.promote()
            _at(started, CUT_2)
            second_cut_at = time.time()
            lan.cut("radius1")
            out, err = nas.communicate(timeout=DURATION + 60)
        finally:
            if nas.poll() is None:
                nas.kill()
                nas.communicate()
        lan.restore("radius1")
        assert nas.returncode == 0, err
        # Both nodes write to the new primary: an Accounting-Request from a
        # second NAS (this process, on the bridge) to each is answered.
        for node in ("radius1", "radius2"):
            assert _probe(lan.addresses[node], f"probe-{node}"), "".join(nodes[node].lines)
        # Stopping the collector writes what it holds (to the new primary).
        assert nodes["collector"].stop() == 0, "".join(nodes["collector"].lines)
        # Neither node was restarted: the same processes, still serving.
        for node, process in nodes.items():
            assert node == "collector" or process.process.poll() is None, \
                "".join(process.lines)
            assert process.process.pid == pids[node]
    finally:
        for process in nodes.values():
            process.stop()
    sim = json.loads(report.read_text())
    answers = [(server, at - wall_started) for server, at in sim["answers"]]
    first, second = lan.addresses["radius1"], lan.addresses["radius2"]
    # Failed over and back: node 2 answered during the first cut, node 1
    # after it; after the promotion node 1 answered (before the second
    # cut) and node 2 (during it): both wrote to the new primary.
    assert any(s == second and CUT_1 < t < RESTORE_1 for s, t in answers), answers
    assert any(s == first and RESTORE_1 < t for s, t in answers), answers
    assert any(s == second and t > second_cut_at - wall_started for s, t in answers), answers
    # (An answer already on its way at the cut may be read a little later.)
    assert not any(s == first and t > second_cut_at - wall_started + 1.0
                   for s, t in answers), answers
    acked = sim["sessions"]
    assert len(acked) == SUBSCRIBERS
    assert all(entry["status"] == "Stop" for entry in acked.values()), acked

    # The same engine that was refused writes now that its server was
    # promoted, without being made anew.
    with standby_only.engine.begin() as connection:
        accounting.apply_batch(connection, [record])
    with standby_only.engine.begin() as connection:
        connection.execute(text("DELETE FROM sessions WHERE acct_session_id = 'probe-1'"))
    standby_only.dispose()

    # What the new primary holds (the standby, now alone).
    ctx = make_context(pair.url("postgres", pair.standby, host="127.0.0.1", read_write=False))
    try:
        with ctx.Session() as session:
            assert session.scalar(text("SELECT pg_is_in_recovery()")) is False
            rows = {row.acct_session_id: row for row in session.scalars(select(RadiusSession))}
            assert {rows.pop(f"probe-{node}").username for node in ("radius1", "radius2")} \
                == {"ha0"}
            assert set(rows) == set(acked)
            for session_id, entry in acked.items():
                row = rows[session_id]
                assert row.username == entry["login"]
                assert (row.octets_in, row.octets_out) == (
                    entry["acct_input_octets"], entry["acct_output_octets"]), session_id
                assert row.stopped_at is not None and row.terminate_cause == "NAS-Reboot"
            # The usage billed from RADIUS equals the NAS's totals, once.
            for _ in range(2):
                radius_usage.roll_up(session, utcnow() - dt.timedelta(hours=1))
                session.commit()
            stored = session.execute(
                select(TrafficRollup.direction, func.sum(TrafficRollup.bytes))
                .where(TrafficRollup.source == "radius").group_by(TrafficRollup.direction)).all()
            # The schedulers' catch-up fee run charged today once, on the old
            # primary; the charges were on the standby when they committed,
            # and a run on the new primary finds nothing left to charge.
            today = jobs.local_today(ctx.settings.get("", "timezone"))
            for _ in range(2):
                assert all(r.charged == 0 for r in jobs.run_fees(ctx.engine, ctx.Session, today))
            fees = session.execute(
                select(LedgerEntry.account_id, func.count(), func.sum(LedgerEntry.amount))
                .where(LedgerEntry.kind == "fee").group_by(LedgerEntry.account_id)).all()
            assert len(fees) == SUBSCRIBERS and all(count == 1 for _, count, _ in fees)
            balances = dict(session.execute(select(Account.id, Account.balance)).all())
            payments = dict(session.execute(
                select(LedgerEntry.account_id, func.sum(LedgerEntry.amount))
                .where(LedgerEntry.kind != "fee").group_by(LedgerEntry.account_id)).all())
            for account_id, _count, charged in fees:
                assert balances[account_id] == payments[account_id] + charged != \
                    payments[account_id]
            # NetFlow: every byte the NAS exported, counted once, through
            # the flushes that failed while the standby was promoted.
            flows = dict(session.execute(
                select(TrafficRollup.direction, func.sum(TrafficRollup.bytes))
                .where(TrafficRollup.source == "netflow")
                .group_by(TrafficRollup.direction)).all())
        assert flows.get("in") == sum(e["acct_output_octets"] for e in acked.values())
        assert flows.get("out") == sum(e["acct_input_octets"] for e in acked.values())
        totals = dict(stored)
        assert totals.get("out", 0) == sum(e["acct_input_octets"] for e in acked.values())
        assert totals.get("in", 0) == sum(e["acct_output_octets"] for e in acked.values())
        assert totals["in"] > 0
    finally:
        ctx.dispose()
