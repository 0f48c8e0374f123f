"""`abonent serve radius --workers N`: several processes on one pair of ports
(SO_REUSEPORT), each a whole server, supervised by the parent."""

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from pyrad import packet
from pyrad.client import Client
from pyrad.dictionary import Dictionary
from sqlalchemy import select

from aaa import accounting
from aaa.dictionary import DICTIONARY_PATH
from aaa.models import Session as RadiusSession
from config.db import utcnow
from tests import factories
from tests.conftest import free_udp_port
from tests.serve_process import ServeProcess

SECRET = b"workers-secret"
SOURCES = 16  # loopback source addresses, i.e. NASes: the kernel hashes on them


class Workers(ServeProcess):
    """`abonent serve radius --workers 2` as a child process."""

    def __init__(self, db_url: str):
        self.auth_port, self.acct_port = free_udp_port(), free_udp_port()
        super().__init__(["radius", "--host", "127.0.0.1", "--auth-port", str(self.auth_port),
                          "--acct-port", str(self.acct_port), "--workers", "2"],
                         {"ABONENT_DATABASE_URL": db_url}, ready="radius: 2 workers")


def _client(workers: Workers, source: str) -> Client:
    client = Client(server="127.0.0.1", authport=workers.auth_port,
                    acctport=workers.acct_port, secret=SECRET,
                    dict=Dictionary(str(DICTIONARY_PATH)), timeout=3, retries=3)
    client.bind((source, 0))
    return client


@pytest.fixture
def fleet(ctx, db_url):
    with ctx.Session() as session:
        for n in range(SOURCES):
            account = factories.make_account(session, number=f"7100{n:02d}")
            factories.make_service(session, account, login=f"w{n}", password=f"pw-{n}")
        # One entry for the whole loopback fleet: the smallest prefix that matches.
        factories.make_nas(session, name="fleet", address="127.0.0.0/8",
                           secret=SECRET.decode(), vendor="mikrotik")
        session.commit()
    workers = Workers(db_url)
    try:
        yield workers
    finally:
        workers.stop()


def _account(client: Client, login: str, session_id: str, status: str, octets: int):
    request = client.CreateAcctPacket(User_Name=login)
    request["Acct-Status-Type"] = status
    request["Acct-Session-Id"] = session_id
    request["Acct-Input-Octets"] = octets
    request["Acct-Output-Octets"] = octets * 3
    reply = client.SendPacket(request)
    assert reply.code == packet.AccountingResponse


def test_workers_share_the_ports_and_store_every_session(fleet, ctx):
    clients = [_client(fleet, f"127.0.0.{n + 1}") for n in range(SOURCES)]
    try:
        for n, client in enumerate(clients):
            auth = client.CreateAuthPacket(code=packet.AccessRequest, User_Name=f"w{n}")
            auth["User-Password"] = auth.PwCrypt(f"pw-{n}")
            assert client.SendPacket(auth).code == packet.AccessAccept
            _account(client, f"w{n}", f"s-{n}", "Start", 0)
            for round_ in range(1, 4):
                _account(client, f"w{n}", f"s-{n}", "Interim-Update", 1000 * round_ + n)
    finally:
        for client in clients:
            client._CloseSocket()
    assert fleet.stop() == 0
    with ctx.Session() as session:
        stored = {row.acct_session_id: (row.octets_in, row.octets_out)
                  for row in session.scalars(select(RadiusSession))}
    assert stored == {f"s-{n}": (3000 + n, 3 * (3000 + n)) for n in range(SOURCES)}
    # Both workers answered some of the fleet (16 sources on 2 workers: all
    # on one has a chance of 2 ** -15), and each logged what it did.
    committed = [int(m.group(1)) for line in fleet.lines
                 if (m := re.search(r"radius\.worker_stopped .* acct_committed=(\d+)", line))]
    assert len(committed) == 2 and all(committed), "".join(fleet.lines)
    assert sum(committed) == SOURCES * 4
    # Stopping drops nothing: a worker is woken by shutdown(), not by a
    # datagram to the shared port that another worker might receive.
    stopped = [line for line in fleet.lines if "radius.worker_stopped" in line]
    assert all(" dropped=0" in line for line in stopped), stopped
    assert any("radius.workers_stopped" in line and f"acct_committed={SOURCES * 4}" in line
               for line in fleet.lines)


def test_one_nas_on_one_port_reaches_every_worker(fleet, ctx):
    """Most BRAS send everything from one address and port; the kernel's
    hash would give all of it to one worker. The workers steer by Identifier
    too (config.workers.steer), so both answer, and a retransmit (same
    Identifier and bytes) is still answered from the duplicate cache."""
    import socket

    from aaa.client import access_request

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as nas:
        nas.bind(("127.0.0.1", 0))
        nas.settimeout(5)
        for identifier in range(40):
            request = access_request(SECRET, identifier, "w0", "pw-0")
            for _ in range(2):                  # the original, then a retransmit
                nas.sendto(request, ("127.0.0.1", fleet.auth_port))
                reply = nas.recv(4096)
                assert reply[0] == packet.AccessAccept and reply[1] == identifier
    client = _client(fleet, "127.0.0.1")
    try:
        for round_ in range(40):
            _account(client, "w0", "one-port", "Interim-Update", 100 * round_)
    finally:
        client._CloseSocket()
    assert fleet.stop() == 0
    accepted = {int(m.group(1)): int(m.group(2)) for line in fleet.lines
                if (m := re.search(r"radius\.worker_stopped worker=(\d+) .* auth_accept=(\d+)",
                                   line))}
    # The kernel ran the BPF program: each worker got what its model says.
    from config.workers import spread
    expected = [sum(spread(2, 0x7F000001, identifier) == worker for identifier in range(40))
                for worker in (0, 1)]
    assert [accepted.get(0), accepted.get(1)] == expected, "".join(fleet.lines)
    committed = [int(m.group(1)) for line in fleet.lines
                 if (m := re.search(r"radius\.worker_stopped .* acct_committed=(\d+)", line))]
    assert all(expected) and len(committed) == 2 and all(committed), "".join(fleet.lines)
    # 40, not 80: each retransmit reached the worker that had the original
    # and was answered from its duplicate cache.
    assert sum(accepted.values()) == sum(committed) == 40
    with ctx.Session() as session:
        row = session.scalar(select(RadiusSession).where(
            RadiusSession.acct_session_id == "one-port"))
    assert row.octets_in == 3900


def test_a_killed_worker_is_replaced(fleet):
    workers = fleet.workers(2)
    assert len(workers) == 2, "the two workers never showed up"
    os.kill(workers[0], signal.SIGKILL)
    fleet.wait_for("radius.worker_died")
    deadline = time.monotonic() + 30
    while len([p for p in fleet.workers(2) if p != workers[0]]) < 2:
        assert time.monotonic() < deadline, "no worker took the dead one's place"
        time.sleep(0.1)
    # Every source is answered again, whichever worker the kernel picks.
    clients = [_client(fleet, f"127.0.0.{n + 1}") for n in range(SOURCES)]
    try:
        for n, client in enumerate(clients):
            _account(client, f"w{n}", f"after-{n}", "Start", 0)
    finally:
        for client in clients:
            client._CloseSocket()
    assert fleet.stop() == 0


@pytest.mark.parametrize("args, env, message", [
    (["--workers", "-1"], {}, "--workers"),
    ([], {"ABONENT_RADIUS_WORKERS": "-1"}, "radius.workers"),
    ([], {"ABONENT_RADIUS_WORKERS": "many"}, "ABONENT_RADIUS_WORKERS"),
])
def test_bad_worker_counts_are_refused(db_url, args, env, message):
    result = subprocess.run(
        [sys.executable, "-m", "scripts.cli", "serve", "radius", "--auth-port", "0",
         "--acct-port", "0", *args],
        env=dict(os.environ, ABONENT_DATABASE_URL=db_url, **env), capture_output=True,
        text=True, timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 2, result.stderr
    assert message in result.stderr


def test_batches_of_two_writers_on_the_same_sessions_do_not_deadlock(pg_url):
    """Two workers' batches naming the same sessions in opposite orders, at
    once, over and over: written in key order, neither waits on the other
    in a cycle (PostgreSQL would abort one with a deadlock error)."""
    from tests.conftest import make_context

    ctx = make_context(pg_url)
    keys = [f"shared-{n}" for n in range(50)]
    errors = []
    barrier = threading.Barrier(2)

    def writer(order):
        try:
            for round_ in range(20):
                now = utcnow()
                records = [accounting.AcctRecord(nas_id=nas_id, status=accounting.INTERIM,
                                                 event_time=now, acct_session_id=key,
                                                 username="u", octets_in=round_)
                           for key in order]
                barrier.wait(10)
                with ctx.engine.begin() as connection:
                    accounting.apply_batch(connection, records)
        except Exception as error:  # noqa: BLE001 - the test reports it
            errors.append(error)
            barrier.abort()

    with ctx.Session() as session:
        nas_id = factories.make_nas(session, name="shared", address="127.0.0.9",
                                    secret="x").id
        session.commit()
    threads = [threading.Thread(target=writer, args=(order,))
               for order in (keys, list(reversed(keys)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    ctx.dispose()
    assert errors == []
