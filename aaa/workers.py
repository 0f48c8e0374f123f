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
"""

from __future__ import annotations

from config import workers


def default_count(settings) -> int:
    """``radius.workers``; 0: one per CPU on PostgreSQL, one on SQLite."""
    return workers.count_for(settings, "radius")


def _serve(index, args, ready, stop) -> dict:
    from aaa.server import RadiusServer, tune_process

    settings, host, auth_port, acct_port, count = args
    tune_process()
    server = workers.serve_until_stopped(
        settings, lambda ctx: RadiusServer(ctx, host=host, auth_port=auth_port,
                                           acct_port=acct_port, reuse_port=True,
                                           freeze_heap=True, workers=count),
        ready, stop, lambda server: (server.auth_port, server.acct_port))
    return dict(server.stats)


def _with_ports(args, ports):
    settings, host, _auth, _acct, count = args
    return settings, host, *ports, count


class RadiusWorkers(workers.WorkerPool):
    def __init__(self, settings, count: int, host: str | None = None,
                 auth_port: int | None = None, acct_port: int | None = None):
        self.host = host if host is not None else settings.get("radius", "host")
        self.auth_port = auth_port if auth_port is not None else settings.get(
            "radius", "auth_port")
        self.acct_port = acct_port if acct_port is not None else settings.get(
            "radius", "acct_port")
        super().__init__(_serve, (settings, self.host, self.auth_port, self.acct_port, count),
                         count, "radius", rebind=_with_ports)

    def start(self) -> "RadiusWorkers":
        self.auth_port, self.acct_port = super().start()
        return self
