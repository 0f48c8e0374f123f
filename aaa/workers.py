"""Several RADIUS server processes on one pair of ports (SO_REUSEPORT).

One Python process answers on one core at most (the GIL); a BRAS fleet on
a multi-core box wants them all. Each worker is a whole ``RadiusServer``
with its own sockets, directory cache, duplicate cache and writer, bound
with SO_REUSEPORT to the same ports, so the kernel spreads datagrams over
the workers by a hash of the (source, destination) addresses and ports.

Why that is safe:

- A NAS retransmits from the source port of the original, so a retransmit
  reaches the worker that saw the original, and the RFC 5080 duplicate
  cache still answers it; if it does not (a worker restarted), the
  accounting write is idempotent and the reply the same.
- Accounting batches from two workers may touch the same sessions (one NAS
  sending from several ports). Each batch writes its rows in key order, so
  two transactions lock rows in one order and cannot deadlock each other.
- Pool addresses are allocated in the database under a unique constraint
  (aaa.pools), as for several RADIUS nodes.

The parent only supervises: it starts the workers, restarts one that dies
(at most ``MAX_RESTARTS`` a minute, then gives up), and on stop tells them
to finish what they hold (the writer commits and answers) and waits.

    pool = WorkerPool(settings, count=2, host="127.0.0.1", auth_port=0, acct_port=0)
    pool.start()            # pool.auth_port / acct_port are real
    ...
    pool.stop()             # {"auth_accept": ..., ...} summed over workers
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time

log = logging.getLogger(__name__)

MAX_RESTARTS = 5      # a minute; a worker that keeps dying is a bug, not bad luck
START_TIMEOUT_S = 60


def default_count(settings) -> int:
    """``radius.workers`` = 0: one per CPU on PostgreSQL; on SQLite one (a
    single file takes one writer at a time, more processes only queue)."""
    configured = settings.get("radius", "workers")
    if configured:
        return configured
    if settings.database_url.startswith("sqlite"):
        return 1
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)


def _worker(settings, host, auth_port, acct_port, index, report, log_level) -> None:
    """One worker process: a RadiusServer until SIGTERM. ``report`` is this
    worker's own pipe to the parent (nothing shared with other workers that
    a SIGKILL could leave locked)."""
    logging.basicConfig(level=log_level,
                        format=f"%(asctime)s %(levelname)s %(name)s[w{index}] %(message)s")
    from aaa.server import RadiusServer, tune_process
    from config.context import open_context

    stop = threading.Event()
    # Ctrl-C reaches the whole process group: the parent decides, and sends
    # SIGTERM, so a worker does not die mid-batch.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    tune_process()
    ctx = open_context(settings=settings)
    server = RadiusServer(ctx, host=host, auth_port=auth_port, acct_port=acct_port,
                          reuse_port=True)
    try:
        server.start()
    except OSError as error:
        report.send(("failed", f"{error.strerror or error}"))
        ctx.dispose()
        return
    report.send(("ready", (server.auth_port, server.acct_port)))
    try:
        while not stop.wait(1.0):
            pass
    finally:
        server.stop()
        stats = dict(server.stats)
        log.info("radius.worker_stopped worker=%s pid=%s %s", index, os.getpid(),
                 " ".join(f"{k}={v}" for k, v in sorted(stats.items())))
        report.send(("stats", stats))
        ctx.dispose()


class WorkerPool:
    def __init__(self, settings, count: int, host: str | None = None,
                 auth_port: int | None = None, acct_port: int | None = None):
        if count < 1:
            raise ValueError("a worker pool needs at least one worker")
        self.settings = settings
        self.count = count
        self.host = host if host is not None else settings.get("radius", "host")
        self.auth_port = auth_port if auth_port is not None else settings.get(
            "radius", "auth_port")
        self.acct_port = acct_port if acct_port is not None else settings.get(
            "radius", "acct_port")
        self._mp = multiprocessing.get_context("spawn")
        # index -> (process, the read end of its report pipe)
        self._workers: dict[int, tuple] = {}
        self._restarts: list[float] = []
        self.stats: dict[str, int] = {}
        self._log_level = logging.getLogger().getEffectiveLevel()

    def _spawn(self, index: int) -> tuple[int, int]:
        reader, writer = self._mp.Pipe(duplex=False)
        process = self._mp.Process(
            target=_worker, name=f"abonent-radius-{index}", daemon=True,
            args=(self.settings, self.host, self.auth_port, self.acct_port, index, writer,
                  self._log_level))
        process.start()
        writer.close()  # the child holds it; EOF here once the child is gone
        self._workers[index] = (process, reader)
        if not reader.poll(START_TIMEOUT_S):
            raise OSError(f"RADIUS worker {index} did not start in {START_TIMEOUT_S} s")
        try:
            kind, value = reader.recv()
        except EOFError:
            process.join(5)
            raise OSError(f"RADIUS worker {index} exited with {process.exitcode} "
                          "before it was listening") from None
        if kind == "failed":
            raise OSError(value)
        return value

    def _add_stats(self, stats: dict) -> None:
        for name, value in stats.items():
            self.stats[name] = self.stats.get(name, 0) + value

    def start(self) -> "WorkerPool":
        """Start the first worker (it may pick the ports: 0 = any free), then
        the others on the same ports. OSError if any cannot listen."""
        try:
            self.auth_port, self.acct_port = self._spawn(0)
            for index in range(1, self.count):
                self._spawn(index)
        except OSError:
            self.stop()
            raise
        log.info("radius.workers_started count=%s host=%s auth_port=%s acct_port=%s",
                 self.count, self.host, self.auth_port, self.acct_port)
        return self

    def supervise(self, done: threading.Event, poll_s: float = 1.0) -> bool:
        """Until ``done``: restart a worker that died. Gives up after
        MAX_RESTARTS in a minute and answers False; True when ``done``."""
        while not done.wait(poll_s):
            for index, (process, reader) in list(self._workers.items()):
                if process.is_alive():
                    continue
                self._collect(reader)
                now = time.monotonic()
                self._restarts = [t for t in self._restarts if now - t < 60] + [now]
                log.error("radius.worker_died worker=%s exitcode=%s", index, process.exitcode)
                if len(self._restarts) > MAX_RESTARTS:
                    log.error("radius.workers_giving_up restarts_in_a_minute=%s",
                              len(self._restarts))
                    return False
                try:
                    self._spawn(index)
                except OSError as error:
                    log.error("radius.worker_restart_failed worker=%s error=%s", index, error)
        return True

    def pids(self) -> list[int]:
        return [process.pid for process, _ in self._workers.values() if process.is_alive()]

    def _collect(self, reader) -> None:
        """Add what a stopped worker reported; close its pipe."""
        try:
            while reader.poll(0):
                kind, value = reader.recv()
                if kind == "stats":
                    self._add_stats(value)
        except (EOFError, OSError):
            pass
        reader.close()

    def stop(self, timeout_s: float = 30.0) -> dict[str, int]:
        """Stop every worker (each commits and answers what it holds) and
        return their counters summed."""
        for process, _ in self._workers.values():
            if process.is_alive():
                process.terminate()  # SIGTERM: the worker stops cleanly
        deadline = time.monotonic() + timeout_s
        for process, _ in self._workers.values():
            process.join(max(0.1, deadline - time.monotonic()))
        for process, reader in self._workers.values():
            if process.is_alive():
                log.error("radius.worker_kill pid=%s (did not stop in %s s)", process.pid,
                          timeout_s)
                process.kill()
                process.join(5)
            self._collect(reader)
        self._workers.clear()
        log.info("radius.workers_stopped %s",
                 " ".join(f"{k}={v}" for k, v in sorted(self.stats.items())))
        return self.stats

    def __enter__(self) -> "WorkerPool":
        return self.start()

    def __exit__(self, *_exc) -> None:
        self.stop()
