"""cabinet.gunicorn_worker.BalancedThreadWorker: a worker whose threads are
all busy leaves a new connection to a worker that can start on it now.

With stock gthread the busy worker's main thread is free (the request
sleeps without the GIL) and races the idle worker for every new
connection; kept-alive connections then stay where they were accepted."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import free_tcp_port, stop_gunicorn

ROOT = Path(__file__).resolve().parents[2]
WORKER = "cabinet.gunicorn_worker.BalancedThreadWorker"


@pytest.fixture
def balanced_gunicorn():
    port = free_tcp_port()
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("gunicorn")), "-k", WORKER, "-w", "2",
         "--threads", "1", "--keep-alive", "30", "-b", f"127.0.0.1:{port}",
         "tests.integration.slow_wsgi:app"],
        cwd=ROOT, env=dict(os.environ), start_new_session=True)
    deadline = time.monotonic() + 30
    pids = set()
    while len(pids) < 2:   # both workers up and answering
        assert process.poll() is None, "gunicorn exited"
        assert time.monotonic() < deadline, "gunicorn did not start two workers"
        try:
            pids.add(_get(port, 0))
        except OSError:
            time.sleep(0.1)
    yield port
    stop_gunicorn(process)


def _get(port: int, ms: int, conn: http.client.HTTPConnection | None = None) -> int:
    """The pid of the worker that answered, on ``conn`` (kept) or on a
    connection of its own (closed)."""
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", f"/?ms={ms}")
        response = conn.getresponse()
        assert response.status == 200
        return int(response.read())
    finally:
        if own:
            conn.close()


def test_a_busy_worker_leaves_new_connections_to_a_free_one(balanced_gunicorn):
    port = balanced_gunicorn
    for _ in range(6):
        slow = {}
        busy = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        thread = threading.Thread(target=lambda: slow.update(pid=_get(port, 800, busy)))
        thread.start()
        try:
            time.sleep(0.3)   # the slow request is running in one worker
            other = _get(port, 0)
        finally:
            thread.join()
            busy.close()
        assert other != slow["pid"], "a worker with no free thread took a new connection"


def test_kept_alive_connections_spread_over_the_workers(balanced_gunicorn):
    """Eight connections opened at once, each kept alive for many requests:
    both workers serve some of them."""
    port = balanced_gunicorn
    served: dict[int, set[int]] = {}
    lock = threading.Lock()

    def client(number: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for _ in range(10):
            pid = _get(port, 20, conn)
            with lock:
                served.setdefault(number, set()).add(pid)
        conn.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(served) == 8
    # A kept-alive connection stays with one worker...
    assert all(len(pids) == 1 for pids in served.values())
    # ...and the connections are not all on one.
    per_worker: dict[int, int] = {}
    for pids in served.values():
        for pid in pids:
            per_worker[pid] = per_worker.get(pid, 0) + 1
    assert len(per_worker) == 2 and min(per_worker.values()) >= 2, per_worker
