"""Several hosts and a standby that takes over (issue 19).

Hosts are network namespaces made by the test (tests/ha_lab.py): a NAS,
two RADIUS nodes and a cabinet host on one bridge, whose own address is
the database host. PostgreSQL runs there twice: a primary and a
synchronous streaming standby. Every node is a real ``abonent serve …``
process given the two clusters as a libpq host list with
``target_session_attrs=read-write``. Each RADIUS host runs ``serve
radius``, ``serve scheduler`` and ``serve collector`` (flushing every
FLUSH_S, holding a newly arrived exporter's datagrams FLUSH_S + 3 s:
``collector.failover_hold_seconds``); collector 1 listens on an address of
its own, the exporter address. The cabinet host runs ``serve cabinet``.
The NAS is ``abonent nas-sim`` with both RADIUS servers configured,
failing over when one does not answer, and both collectors, failing over
when the kernel reports the first unreachable and then sending its last
datagrams again (``--export-replay``).

The run: the NAS brings its subscribers online through node 1 and
exports to collector 1; collector 1's address is withdrawn (the NAS's
datagrams are lost until its ARP lookup fails, then it moves to collector
2 and re-sends its last datagrams, some of which collector 1 counted and
had not stored yet); node 1's link is cut (the NAS fails over to node 2)
and restored (the NAS comes back); a subscriber logs in to the cabinet,
and a payment terminal network starts paying through the cabinet's OSMP
endpoint (repeating a payment until it is acknowledged); the primary is
killed under the accounting and payment load and the standby promoted;
node 1 is cut again, so that node 2 too must write to the new primary;
the NAS stops every session. Then what the new primary holds must equal
what the NAS had acknowledged, session by session, and the RADIUS usage
rolled up from it must equal the NAS's totals: nothing acknowledged lost,
nothing counted twice, and no node restarted. The schedulers' fee run
charged every account once (on the old primary), and a fee run on the new
primary charges nothing again. The cabinet, not restarted, showed the
subscriber the balance after the fee before the promotion, right after it
(on the same login; at most two requests fail first), and at the end on a
new login. Every payment the terminal network was answered for is on the
new primary, credited once, and none other. The NetFlow rollups equal the bytes the
NAS exported, although collector 2's flushes failed meanwhile, and no
export packet was counted by both collectors (collector 2 skipped the
copies: with ``failover_hold_seconds`` 0 this run counts some twice).
"""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from sqlalchemy import func, select, text

from aaa import accounting, client
from aaa.models import Session as RadiusSession
from aaa.server import database_unavailable
from collector import radius_usage
from collector.models import ReplaySet, TrafficRollup
from config.db import utcnow
from rating import jobs
from rating import agents
from rating.accounts import create_cabinet_user
from rating.models import Account, LedgerEntry
from rating.payments import ProviderPayment
from config.migrate import upgrade
from tests.conftest import free_tcp_port, make_context
from tests.factories import make_account, make_nas, make_service
from tests.ha_lab import PG_BIN, Lan, PgPair, namespaces_possible, run
from tests.serve_process import ROOT, ServeProcess

SUBSCRIBERS = 40
SECRET = "ha-secret"
CABINET_LOGIN, CABINET_PASSWORD = "ha-cabinet", "ha-cabinet-pw-1"
# A payment terminal network paying through the cabinet's OSMP endpoint.
AGENT, AGENT_PASSWORD, PAID_ACCOUNT = "ha-terminal", "ha-terminal-pw-1", "HA00001"
# Seconds after the NAS brought its sessions up. The first cut lasts 5 s:
# the NAS gives a server 1 s and node 2 must have answered within the cut
# (with 3.5 s, one CI run on a loaded 2-core box saw no answer in time).
WITHDRAW, CUT_1, RESTORE_1, PROMOTE, CUT_2, DURATION = 12.0, 16.0, 21.0, 23.5, 26.5, 29.5
# Collectors flush every FLUSH_S; one that an exporter comes to holds its
# datagrams FLUSH_S + 3 s (collector.failover_hold_seconds). Collector 1
# has the exporter for longer than that before it is withdrawn, and the
# NAS finds that out sooner than FLUSH_S + 2 s (the peer sync) after the
# last datagram collector 1 counted: without the hold, collector 2 would
# count the replayed copies of what collector 1 had not yet stored.
FLUSH_S = 3.0


@pytest.fixture
def lab():
    reason = namespaces_possible()
    if reason:
        pytest.skip(reason)
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"PostgreSQL 15 server programs are not in {PG_BIN}")
    lan = Lan(["nas", "radius1", "radius2", "cabinet"])
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


def _seed(url: str, nas_address: str, probe_address: str,
          agent_network: str) -> tuple[list[tuple[str, str]], int]:
    """The subscribers' logins and passwords, and the account with a cabinet
    login; a payment agent allowed from ``agent_network``."""
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
                if number == 0:
                    create_cabinet_user(session, account, login=CABINET_LOGIN,
                                        password=CABINET_PASSWORD)
                    cabinet_account = account.id
            agents.add_agent(session, name=AGENT, password=AGENT_PASSWORD,
                             networks=[agent_network])
            session.commit()
        return logins, cabinet_account
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


def _cabinet(address: str, method: str, path: str, body: str | None = None,
             cookie: str | None = None) -> tuple[int, str, str | None]:
    """One HTTP request to the cabinet: (status, body, the cookie it set)."""
    conn = http.client.HTTPConnection(address, 8080, timeout=10)
    try:
        headers = {"Cookie": cookie} if cookie else {}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body, headers)
        response = conn.getresponse()
        text = response.read().decode()
        set_cookie = response.getheader("Set-Cookie")
        return response.status, text, set_cookie.split(";")[0] if set_cookie else None
    finally:
        conn.close()


def _cabinet_log_in(address: str) -> str:
    """Log in as a subscriber would (the form, its CSRF token): the session cookie."""
    status, page, cookie = _cabinet(address, "GET", "/login")
    assert status == 200, page
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    body = urllib.parse.urlencode({"login": CABINET_LOGIN, "password": CABINET_PASSWORD,
                                   "csrf_token": token})
    status, page, session_cookie = _cabinet(address, "POST", "/login", body, cookie)
    assert status == 302 and session_cookie, (status, page)
    return session_cookie


def _cabinet_balance(address: str, cookie: str, account_id: int,
                     timeout: float = 20.0) -> tuple[str, int]:
    """The balance the cabinet shows, and how many requests failed first (a
    request on a connection to the dead primary fails once; the next gets
    a new one)."""
    failed = 0
    deadline = time.monotonic() + timeout
    while True:
        status, text, _ = _cabinet(address, "GET", f"/api/v1/accounts/{account_id}",
                                   cookie=cookie)
        if status == 200:
            return json.loads(text)["balance"], failed
        assert status >= 500 and time.monotonic() < deadline, (status, text)
        failed += 1
        time.sleep(0.5)


class Terminal(threading.Thread):
    """A payment terminal network: pays 10.00 at a time through OSMP, each
    payment with its own txn_id, and repeats a payment not acknowledged
    (an error, a temporary-error answer, no answer) until it is, as such
    networks do. ``acked``: the txn_ids answered result 0."""

    def __init__(self, address: str):
        super().__init__(daemon=True)
        self.address = address
        self.acked: list[str] = []
        self.pending: str | None = None
        self.repeats = 0
        self.stopping = threading.Event()
        self.deadline = time.monotonic() + 120

    def pay(self, txn_id: str) -> bool:
        query = urllib.parse.urlencode({"command": "pay", "txn_id": txn_id,
                                        "account": PAID_ACCOUNT, "sum": "10.00",
                                        "txn_date": time.strftime("%Y%m%d%H%M%S")})
        conn = http.client.HTTPConnection(self.address, 8080, timeout=5)
        try:
            credentials = base64.b64encode(f"{AGENT}:{AGENT_PASSWORD}".encode()).decode()
            conn.request("GET", f"/osmp/{AGENT}?{query}",
                         headers={"Authorization": "Basic " + credentials})
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                return False
            return ET.fromstring(body).findtext("result") == "0"
        except (OSError, http.client.HTTPException, ET.ParseError):
            return False
        finally:
            conn.close()

    def run(self) -> None:
        number = 7_000_000
        while not self.stopping.is_set():
            number += 1
            self.pending = str(number)
            while not self.pay(self.pending):
                self.repeats += 1
                if time.monotonic() > self.deadline:
                    return
                time.sleep(0.2)
            self.acked.append(self.pending)
            self.pending = None
            time.sleep(0.1)


def _at(started: float, offset: float) -> None:
    time.sleep(max(0.0, started + offset - time.monotonic()))


def test_nas_fails_over_between_nodes_and_the_standby_takes_over(lab, tmp_path):
    lan, pair = lab
    logins, account_id = _seed(
        pair.url("postgres", pair.primary, host="127.0.0.1", read_write=False),
        lan.addresses["nas"], lan.host, f"{lan.prefix}.0/24")
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
    # The nodes' DSN: both clusters, the writable one wins. Each node its
    # own data directory (a collector's spool is its own).
    url = pair.url("postgres", pair.primary, pair.standby)
    env = {"ABONENT_DATABASE_URL": url,
           "ABONENT_COLLECTOR_FAILOVER_HOLD_SECONDS": str(FLUSH_S + 3)}
    # The exporter address of collector 1: an address of its own on node
    # 1's host, withdrawn when that collector is taken out of service.
    flow_address = f"{lan.prefix}.50"
    run(*lan.exec_prefix("radius1"), "ip", "addr", "add", f"{flow_address}/24", "dev", "eth0")
    # The NAS gives up on an address that does not answer ARP after two
    # tries 250 ms apart (Linux: three, 1 s apart).
    run("ip", "-n", lan.namespaces["nas"], "ntable", "change", "name", "arp_cache", "dev",
        "eth0", "retrans", "250", "mcast_probes", "2")
    cabinet_address = lan.addresses["cabinet"]
    nodes = {}

    def serve(name, host, args, ready):
        folder = tmp_path / name
        folder.mkdir()
        return ServeProcess(args, dict(env, ABONENT_DATA_DIR=str(folder)), ready=ready,
                            prefix=lan.exec_prefix(host))
    try:
        # On each RADIUS host a scheduler and a collector too, and a
        # cabinet on a host of its own; all seven start at once.
        with ThreadPoolExecutor(7) as starting:
            for node in ("radius1", "radius2"):
                nodes[node] = starting.submit(
                    serve, node, node, ["radius", "--host", lan.addresses[node], "--auth-port",
                                        "1812", "--acct-port", "1813", "--workers", "1"],
                    "radius: auth on")
                nodes[f"scheduler-{node}"] = starting.submit(
                    serve, f"scheduler-{node}", node, ["scheduler"], "Scheduler started")
            # The NAS exports NetFlow to collector 1 and fails over to
            # collector 2, each flushing every second: collector 2's
            # flushes fail while there is no primary.
            for node, address in (("radius1", flow_address),
                                  ("radius2", lan.addresses["radius2"])):
                nodes[f"collector-{node}"] = starting.submit(
                    serve, f"collector-{node}", node,
                    ["collector", "--host", address, "--port", "2055", "--workers", "1",
                     "--flush-seconds", str(FLUSH_S)], "collector: listening")
            nodes["cabinet"] = starting.submit(
                serve, "cabinet", "cabinet",
                ["cabinet", "--host", cabinet_address, "--port", "8080"],
                "cabinet: listening")
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
             "--collector", f"{flow_address}:2055",
             "--collector", f"{lan.addresses['radius2']}:2055", "--export-replay", "12"],
            cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        try:
            line = nas.stdout.readline()
            assert f"{SUBSCRIBERS} of {SUBSCRIBERS} sessions up" in line, \
                line + nas.stderr.read()
            started = time.monotonic()
            wall_started = time.time()
            # Collector 1 is taken out of service: its address is withdrawn
            # (the host stays, and so does the collector, which writes what
            # it counted), and the NAS's ARP entry for it goes, as a route
            # would be withdrawn in a routed network. The NAS's datagrams
            # are lost until its ARP lookup fails (~0.5 s); then it moves to
            # collector 2 and sends its last datagrams again there, among
            # them some that collector 1 counted and has not stored yet.
            _at(started, WITHDRAW)
            run(*lan.exec_prefix("radius1"), "ip", "addr", "del", f"{flow_address}/24",
                "dev", "eth0")
            run(*lan.exec_prefix("nas"), "ip", "neigh", "del", flow_address, "dev", "eth0",
                check=False)
            _at(started, CUT_1)
            lan.cut("radius1")
            _at(started, RESTORE_1)
            lan.restore("radius1")
            # A subscriber logs in to the cabinet and sees the balance
            # after the fee the schedulers charged.
            cookie = _cabinet_log_in(cabinet_address)
            before_promotion, _ = _cabinet_balance(cabinet_address, cookie, account_id)
            # A terminal network pays through the cabinet across the promotion.
            terminal = Terminal(cabinet_address)
            terminal.start()
            _at(started, PROMOTE)
            pair.primary.stop("immediate")     # a crash: no shutdown checkpoint
            pair.promote()
            # At once the cabinet, not restarted, serves the subscriber from
            # the new primary, on the session made before the promotion.
            promoted_at = time.monotonic()
            after_promotion, failed = _cabinet_balance(cabinet_address, cookie, account_id)
            cabinet_seconds = time.monotonic() - promoted_at
            _at(started, CUT_2)
            second_cut_at = time.time()
            lan.cut("radius1")
            terminal.stopping.set()
            terminal.join(60)
            assert not terminal.is_alive() and terminal.pending is None, terminal.pending
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
        # And to a new login.
        fresh_login, _ = _cabinet_balance(cabinet_address, _cabinet_log_in(cabinet_address),
                                          account_id)
        assert failed <= 2 and cabinet_seconds < 5, (failed, cabinet_seconds)
        # Stopping the collectors writes what they hold (to the new primary).
        for node in ("collector-radius1", "collector-radius2"):
            assert nodes[node].stop() == 0, "".join(nodes[node].lines)
        # Collector 2 recognised replayed copies (and skipped them).
        stats = json.loads(next((tmp_path / "collector-radius2" / "collector")
                                .glob("stats-*.json")).read_text())
        assert stats["counters"]["replayed_packets"] > 0, stats
        # No node was restarted: the same processes, still serving.
        for node, process in nodes.items():
            assert node.startswith("collector") or process.process.poll() is None, \
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
    around = [(s, round(t, 1)) for s, t in answers if CUT_1 - 2 < t < RESTORE_1 + 2]
    assert any(s == second and CUT_1 < t < RESTORE_1 for s, t in answers), around
    assert any(s == first and RESTORE_1 < t for s, t in answers), answers
    assert any(s == second and t > second_cut_at - wall_started for s, t in answers), answers
    # (An answer already on its way at the cut may be read a little later.)
    assert not any(s == first and t > second_cut_at - wall_started + 1.0
                   for s, t in answers), answers
    # The NAS moved its exports once, to collector 2, and sent its last
    # datagrams again there; none was lost for good.
    assert [c for c, _ in sim["export_failovers"]] == [lan.addresses["radius2"]], sim
    assert sim["exported"]["replayed"] > 0 and sim["exported"]["lost"] == 0, sim["exported"]
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
            # What the cabinet showed before and after the promotion.
            assert {before_promotion, after_promotion, fresh_login} == \
                {f"{balances[account_id]:.2f}"}
            # Every payment the terminal network was answered for is on the
            # new primary, credited once; none it was not answered for.
            paid = session.execute(select(ProviderPayment.txn_id, ProviderPayment.amount)
                                   .where(ProviderPayment.provider == f"osmp:{AGENT}")).all()
            assert sorted(txn for txn, _ in paid) == sorted(terminal.acked)
            assert len(terminal.acked) >= 10 and all(a == Decimal("10.00") for _, a in paid)
            assert session.scalar(select(func.count()).select_from(LedgerEntry).where(
                LedgerEntry.idempotency_key.like(f"payment:osmp:{AGENT}:%"))) \
                == len(terminal.acked)
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
            # Both collectors counted export packets (origin: host:pid),
            # and none of the packets twice: the replayed copies of what
            # collector 1 had counted were skipped by collector 2.
            counted = {}
            for origin, digests in session.execute(select(ReplaySet.origin,
                                                          ReplaySet.digests)):
                keys = counted.setdefault(int(origin.rpartition(":")[2]), [])
                keys.extend(bytes(digests)[i:i + 16] for i in range(0, len(digests), 16))
            assert {pid: len(keys) > 0 for pid, keys in counted.items()} == {
                pids["collector-radius1"]: True, pids["collector-radius2"]: True}, counted
            every = [key for keys in counted.values() for key in keys]
            assert len(every) == len(set(every)) == sim["exported"]["datagrams"]
        assert flows.get("in") == sum(e["acct_output_octets"] for e in acked.values())
        assert flows.get("out") == sum(e["acct_input_octets"] for e in acked.values())
        totals = dict(stored)
        assert totals.get("out", 0) == sum(e["acct_input_octets"] for e in acked.values())
        assert totals.get("in", 0) == sum(e["acct_output_octets"] for e in acked.values())
        assert totals["in"] > 0
    finally:
        ctx.dispose()
