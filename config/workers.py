"""Supervised worker processes, for servers that share their ports.

One Python process runs Python on one core at a time (the GIL). A RADIUS
server or a flow collector on a multi-core box runs several copies of
itself, each bound with SO_REUSEPORT to the same ports, so that the kernel
spreads the senders over them (by a hash of source and destination). This
module is the part they share: start the copies, restart one that dies,
stop them all cleanly.

A worker is a module-level function ``target(index, args, ready, stop)``
run in a spawned process: it starts its server, calls ``ready(value)``
once it listens (the first worker's value may fix what the others bind,
e.g. the ports it picked for port 0), runs until ``stop`` (a
threading.Event set by SIGTERM) and returns its counters as a dict.

Each worker reports on a pipe of its own: nothing is shared between the
workers that a SIGKILL of one could leave locked (a multiprocessing.Event
shared with a killed worker can stay locked for ever).

    pool = WorkerPool(target, args, count=2, name="radius")
    pool.start()                        # the first worker's ready value
    healthy = pool.supervise(done)      # until done.set(); False: gave up
    pool.stop()                         # counters summed over the workers
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import struct
import threading
import time
from typing import Any, Callable

log = logging.getLogger(__name__)

MAX_RESTARTS = 5      # a minute; a worker that keeps dying is a bug, not bad luck
START_TIMEOUT_S = 60


def cpu_count() -> int:
    """The CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def count_for(settings, section: str) -> int:
    """``<section>.workers``, where 0 means one per CPU on PostgreSQL and one
    on SQLite (a single file takes one writer at a time: more processes
    would only queue for it)."""
    configured = settings.get(section, "workers")
    if configured < 0:
        raise ValueError(f"setting {section}.workers must be 0 (one per CPU) or more")
    if configured:
        return configured
    if settings.database_url.startswith("sqlite"):
        return 1
    return cpu_count()


SO_ATTACH_REUSEPORT_CBPF = 51      # Linux 4.5+
_NET = -0x100000 & 0xFFFFFFFF       # SKF_NET_OFF: offsets from the IP header


def reuseport_program(workers: int, payload_byte: int | None = None) -> bytes:
    """Classic BPF choosing the socket of a SO_REUSEPORT group: a hash of
    the last 32 bits of the datagram's source address (IPv4, or IPv6 after a
    version check) and, if given, the UDP payload's octet ``payload_byte``,
    modulo the number of workers. Each is multiplied by an odd constant
    (wrapping at 32 bits) and the high half taken: a plain sum would follow
    any pattern a sender has (a load generator that ties its source address
    to the Identifier sent every request to one worker).
    Instructions: (code, jt, jf, k)."""
    program = [
        (0x30, 0, 0, _NET),            # ldb [ip + 0]      version and IHL
        (0x74, 0, 0, 4),               # rsh #4            the version
        (0x15, 0, 2, 6),               # jeq #6 ? next : +2
        (0x20, 0, 0, _NET + 20),       # ld [ip + 20]      IPv6 source, last word
        (0x05, 0, 0, 1),               # ja +1
        (0x20, 0, 0, _NET + 12),       # ld [ip + 12]      IPv4 source
        (0x24, 0, 0, 0x9E3779B1),      # mul #k1
    ]
    if payload_byte is not None:
        program += [
            (0x07, 0, 0, 0),           # tax               x = hashed source
            (0x30, 0, 0, payload_byte),  # ldb [payload_byte]
            (0x24, 0, 0, 0x85EBCA6B),  # mul #k2
            (0x0C, 0, 0, 0),           # add x
        ]
    program += [
        (0x74, 0, 0, 16),              # rsh #16           the well-mixed half
        (0x94, 0, 0, workers),         # mod #workers
        (0x16, 0, 0, 0),               # ret a             the socket's index
    ]
    return b"".join(struct.pack("HBBI", *instruction) for instruction in program)


def spread(workers: int, source: int, payload: int | None = None) -> int:
    """What reuseport_program computes, in Python (tests, and to reason
    about a sender's spread): the worker index."""
    value = (source * 0x9E3779B1) & 0xFFFFFFFF
    if payload is not None:
        value = (value + payload * 0x85EBCA6B) & 0xFFFFFFFF
    return (value >> 16) % workers


def steer(sock, workers: int, payload_byte: int | None = None) -> bool:
    """Attach ``reuseport_program`` to the SO_REUSEPORT group of ``sock``.

    Without it the kernel picks a socket by a hash of source address and
    port. Sockets join the group in the order the workers bind; a
    restarted worker joins at the end, and an index past the group falls
    back to the kernel's hash. False (with a warning) where the kernel
    refuses the program: not Linux, or before 4.5."""
    import ctypes
    import socket

    code = reuseport_program(workers, payload_byte)
    buffer = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("@HP", len(code) // 8, ctypes.addressof(buffer))
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)
    except OSError as error:
        log.warning("workers: cannot steer datagrams to workers (%s); "
                    "the kernel's address and port hash decides", error)
        return False
    return True


def serve_until_stopped(settings, make_server, ready, stop, listening):
    """The body of most workers: open a context, ``make_server(ctx)``, start
    it, report ``listening(server)``, run until ``stop``, then stop the
    server (it finishes what it holds) and close the context. Returns the
    stopped server, for its counters."""
    from config.context import open_context

    ctx = open_context(settings=settings)
    server = make_server(ctx)
    try:
        server.start()
    except OSError:
        ctx.dispose()
        raise
    ready(listening(server))
    try:
        stop.wait()
    finally:
        server.stop()
        ctx.dispose()
    return server


def _child(target, index, args, report, log_level, name) -> None:
    logging.basicConfig(level=log_level,
                        format=f"%(asctime)s %(levelname)s %(name)s[{name}-{index}] %(message)s")
    stop = threading.Event()
    # Ctrl-C reaches the whole process group: the parent decides and sends
    # SIGTERM, so that a worker does not die in the middle of a write.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    listening = []

    def ready(value) -> None:
        listening.append(True)
        report.send(("ready", value))

    try:
        stats = target(index, args, ready, stop) or {}
    except Exception as error:
        if not listening:
            report.send(("failed", f"{getattr(error, 'strerror', None) or error}"))
            return
        raise
    log.info("%s.worker_stopped worker=%s pid=%s %s", name, index, os.getpid(),
             " ".join(f"{k}={v}" for k, v in sorted(stats.items())))
    report.send(("stats", stats))


class WorkerPool:
    def __init__(self, target: Callable, args: Any, count: int, name: str,
                 rebind: Callable[[Any, Any], Any] | None = None):
        """``rebind(args, first_ready_value)`` gives the args of the other
        workers (default: the same args)."""
        if count < 1:
            raise ValueError("a worker pool needs at least one worker")
        self.target, self.args, self.count, self.name = target, args, count, name
        self._rebind = rebind
        self._mp = multiprocessing.get_context("spawn")
        # index -> (process, the read end of its report pipe)
        self._workers: dict[int, tuple] = {}
        self._restarts: list[float] = []
        self.stats: dict[str, int] = {}
        # Workers that died (not stopped by us), for metrics.
        self.deaths = 0
        self._log_level = logging.getLogger().getEffectiveLevel()

    def _spawn(self, index: int) -> Any:
        reader, writer = self._mp.Pipe(duplex=False)
        process = self._mp.Process(
            target=_child, name=f"abonent-{self.name}-{index}", daemon=True,
            args=(self.target, index, self.args, writer, self._log_level, self.name))
        process.start()
        writer.close()  # the child holds it; EOF here once the child is gone
        self._workers[index] = (process, reader)
        if not reader.poll(START_TIMEOUT_S):
            raise OSError(f"{self.name} worker {index} did not start in {START_TIMEOUT_S} s")
        try:
            kind, value = reader.recv()
        except EOFError:
            process.join(5)
            raise OSError(f"{self.name} worker {index} exited with {process.exitcode} "
                          "before it was listening") from None
        if kind == "failed":
            raise OSError(value)
        return value

    def start(self) -> Any:
        """Start every worker; returns the first one's ready value. OSError
        (after stopping those started) if one cannot listen."""
        try:
            first = self._spawn(0)
            if self._rebind is not None:
                self.args = self._rebind(self.args, first)
            for index in range(1, self.count):
                self._spawn(index)
        except OSError:
            self.stop()
            raise
        return first

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
                self.deaths += 1
                log.error("%s.worker_died worker=%s exitcode=%s", self.name, index,
                          process.exitcode)
                self.on_death(index)
                if len(self._restarts) > MAX_RESTARTS:
                    log.error("%s.workers_giving_up restarts_in_a_minute=%s", self.name,
                              len(self._restarts))
                    return False
                try:
                    self._spawn(index)
                except OSError as error:
                    log.error("%s.worker_restart_failed worker=%s error=%s", self.name, index,
                              error)
        return True

    def on_death(self, index: int) -> None:
        """Called when worker ``index`` died, before it is started again."""

    def pids(self) -> list[int]:
        return [process.pid for process, _ in self._workers.values() if process.is_alive()]

    def _collect(self, reader) -> None:
        """Add what a stopped worker reported; close its pipe."""
        try:
            while reader.poll(0):
                kind, value = reader.recv()
                if kind == "stats":
                    for name, number in value.items():
                        self.stats[name] = self.stats.get(name, 0) + number
        except (EOFError, OSError):
            pass
        reader.close()

    def stop(self, timeout_s: float = 30.0) -> dict[str, int]:
        """SIGTERM every worker (each finishes what it holds), wait, and
        return their counters summed."""
        for process, _ in self._workers.values():
            if process.is_alive():
                process.terminate()
        deadline = time.monotonic() + timeout_s
        for process, _ in self._workers.values():
            process.join(max(0.1, deadline - time.monotonic()))
        for process, reader in self._workers.values():
            if process.is_alive():
                log.error("%s.worker_kill pid=%s (did not stop in %s s)", self.name,
                          process.pid, timeout_s)
                process.kill()
                process.join(5)
            self._collect(reader)
        self._workers.clear()
        log.info("%s.workers_stopped %s", self.name,
                 " ".join(f"{k}={v}" for k, v in sorted(self.stats.items())))
        return self.stats
