"""Several RADIUS server processes on one pair of ports (SO_REUSEPORT).

Each worker is a whole ``RadiusServer`` with its own sockets, directory
cache, duplicate cache and writer; config.workers starts, restarts and
stops them. Why several are safe:

- The workers pick datagrams by NAS address and RADIUS Identifier (a BPF
  program on the group, config.workers.steer), not by the kernel's hash of
  address and port: a NAS that sends everything from one port, as most
  do, still reaches every worker.
- A NAS retransmits with the Identifier of the original, so a retransmit
  reaches the worker that saw the original, and the RFC 5080 duplicate
  cache still answers it; if it does not (a worker restarted), the
  accounting write is idempotent and the reply the same.
- Accounting batches from two workers may touch the same sessions (one
  session's Interims carry different Identifiers). Each batch writes its
  rows in key order, so two transactions lock rows in one order and cannot
  deadlock each other; the upsert keeps the greatest counters and the
  earliest start whatever order the batches commit in.
- Pool addresses are allocated in the database under a unique constraint
  (aaa.pools), as for several RADIUS nodes.

    pool = RadiusWorkers(settings, count=2, host="127.0.0.1", auth_port=0, acct_port=0)
    pool.start()            # pool.auth_port / acct_port are real
    ...
    pool.stop()             # {"auth_accept": ..., ...} summed over workers

Each worker writes its counters (RadiusServer.snapshot) to a file of its
own in a directory the pool made, every second; ``snapshot()`` is their sum
(aaa.metrics), plus what workers that died had written last, so the node's
counters do not go back when one is restarted, and the number of deaths.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

from aaa import metrics
from config import workers


def default_count(settings) -> int:
    """``radius.workers``; 0: one per CPU on PostgreSQL, one on SQLite."""
    return workers.count_for(settings, "radius")


def _stats_path(folder: str, index: int) -> str:
    return os.path.join(folder, f"worker-{index}.json")


def _serve(index, args, ready, stop) -> dict:
    from aaa.server import RadiusServer, tune_process

    settings, host, auth_port, acct_port, count, folder = args
    tune_process()
    server = workers.serve_until_stopped(
        settings, lambda ctx: RadiusServer(ctx, host=host, auth_port=auth_port,
                                           acct_port=acct_port, reuse_port=True,
                                           freeze_heap=True, workers=count,
                                           stats_path=_stats_path(folder, index)),
        ready, stop, lambda server: (server.auth_port, server.acct_port))
    return dict(server.stats)


def _with_ports(args, ports):
    settings, host, _auth, _acct, count, folder = args
    return settings, host, *ports, count, folder


def _read(path: str) -> dict | None:
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


class RadiusWorkers(workers.WorkerPool):
    def __init__(self, settings, count: int, host: str | None = None,
                 auth_port: int | None = None, acct_port: int | None = None):
        self.host = host if host is not None else settings.get("radius", "host")
        self.auth_port = auth_port if auth_port is not None else settings.get(
            "radius", "auth_port")
        self.acct_port = acct_port if acct_port is not None else settings.get(
            "radius", "acct_port")
        self.stats_dir = tempfile.mkdtemp(prefix="abonent-radius-")
        # What workers that died had counted (their last file).
        self._retired = metrics.empty()
        super().__init__(_serve, (settings, self.host, self.auth_port, self.acct_port, count,
                                  self.stats_dir), count, "radius", rebind=_with_ports)

    def start(self) -> "RadiusWorkers":
        self.auth_port, self.acct_port = super().start()
        return self

    def on_death(self, index: int) -> None:
        path = _stats_path(self.stats_dir, index)
        last = _read(path)
        if last is not None:
            self._retired = metrics.merge([self._retired, last], gauges=False)
        try:
            os.unlink(path)
        except OSError:
            pass

    def snapshot(self) -> dict:
        """The workers' counters summed, with the pool's own."""
        live = [_read(_stats_path(self.stats_dir, index)) for index in range(self.count)]
        total = metrics.merge([self._retired, *(s for s in live if s is not None)])
        total["counters"]["worker_deaths"] = self.deaths
        total["gauges"]["workers"] = len(self.pids())
        return total

    def stop(self, timeout_s: float = 30.0) -> dict[str, int]:
        try:
            return super().stop(timeout_s)
        finally:
            shutil.rmtree(self.stats_dir, ignore_errors=True)
