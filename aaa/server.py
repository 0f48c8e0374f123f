"""The RADIUS server: UDP sockets, threads, and nothing that decides.

Five threads:

- **auth**: receive an Access-Request, answer from the cached directory
  (``aaa.directory``) through ``aaa.authorize.decide``; one datagram in, one
  out, no database in the steady state.
- **acct**: receive an Accounting-Request, check it, parse it into an
  ``AcctRecord`` and queue it with its already-encoded reply.
- **writer**: take what is queued, wait for more what is left of
  ``radius.batch_ms`` after the time the last batch took to write (nothing
  once writing takes that long: the queue fills meanwhile), up to
  ``radius.batch_max``, write it all in ONE transaction, commit, and only
  then send the replies (RFC 2866 §2: no answer unless recorded). If the
  commit fails no reply goes out and the NAS retransmits; a record the
  database refuses is found by splitting the batch and dropped alone.
  Owners the acct thread's cache did not hold are looked up here, one
  query per batch.
- **lookup**: what a receive thread cannot answer from memory (a
  subscriber or NAS not in the caches, a pool address to lease) is handed
  here with its datagram, and handled again where the database may be
  read. A receive thread never waits for the database.
- **refresh**: re-reads the caches, and writes the counters for the parent
  of several workers (aaa.workers, aaa.metrics).

Every drop is one log line ``radius.drop`` with the NAS (or source) and the
reason (at most DROP_LOG_PER_S a second), and is counted by reason; an
error that repeats (a database outage fails every packet) is one line per
reason a second with a count (ErrorLog). The secret and the password never
reach a log.

    server = RadiusServer(ctx, host="127.0.0.1", auth_port=0, acct_port=0)
    server.start()          # binds; server.auth_port / acct_port are real
    ...
    server.stop()
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gc
import json
import logging
import os
import queue
import socket
import sys
import threading
import time

from aaa import accounting
from aaa import packet as wire
from aaa import fastpath, metrics, mschap, pools, voice
from aaa.authorize import Decision, binding_valid, chap_valid, decide, normalize_mac, pap_valid
from aaa.dictionary import encode, encode_all
from aaa.directory import NasClient, NasTable, NotCached, SubscriberDirectory
from aaa.fastpath import FastAccepts
from config import workers
from config.db import server_gone, utcnow
from rating import policies

log = logging.getLogger(__name__)

AGENT_CIRCUIT_ID = (3561, 1)  # ADSL-Agent-Circuit-Id, RFC 4679
CALLING_STATION_ID = 31
MS_CHAP_CHALLENGE = (311, 11)  # RFC 2548
MS_CHAP2_RESPONSE = (311, 25)
MS_CHAP2_SUCCESS = (311, 26)
MS_MPPE_ENCRYPTION_POLICY, MS_MPPE_ENCRYPTION_TYPES = (311, 7), (311, 8)
MS_MPPE_SEND_KEY, MS_MPPE_RECV_KEY = (311, 16), (311, 17)

DROP_LOG_PER_S = 20
# Accounting requests waiting for the writer, as multiples of batch_max:
# beyond this the database is not keeping up, and a request is better
# dropped (the NAS retransmits) than queued without bound.
QUEUE_LIMIT_BATCHES = 50
# Datagrams waiting for the lookup thread; beyond this a miss is dropped
# (the NAS retransmits).
LOOKUP_QUEUE_LIMIT = 1024
# After a commit failed because the database is unavailable, the writer
# waits this long before the next attempt (the NAS retransmits meanwhile).
WRITER_BACKOFF_S = 0.25
# How long the writer keeps a batch it could not store and tries it again
# (see _commit); beyond it the NAS's retransmits are the retry. Below a
# NAS's usual give-up time (3 tries of 3-5 s) and about what a standby's
# promotion takes; at most WRITER_HOLD_S / WRITER_BACKOFF_S tries a batch.
WRITER_HOLD_S = 5.0
# What a duplicate cache entry costs beyond the request and reply bytes
# (key tuple, address, list, time stamp, dict slot), roughly.
ENTRY_OVERHEAD = 240


def describe(error: BaseException) -> str:
    """An exception in one line for a log: the driver's message, never the
    SQL statement or its parameters (they may carry subscriber data)."""
    original = getattr(error, "orig", None) or error
    lines = str(original).strip().splitlines()
    return f"{type(original).__name__}: {lines[0][:200] if lines else ''}"


def database_unavailable(error: BaseException) -> bool:
    """The database as a whole failed (refused, lost, timed out, locked,
    deadlocked), rather than what was sent to it: worth trying again as it
    was, pointless to split into smaller transactions."""
    from sqlalchemy import exc
    if isinstance(error, exc.DBAPIError):
        return bool(error.connection_invalidated) or isinstance(
            error, (exc.OperationalError, exc.InterfaceError)) or server_gone(error)
    if server_gone(error):      # a read-only standby, a server shutting down
        return True
    # A driver error SQLAlchemy did not wrap (aaa.accounting runs its batch
    # statements on the driver's cursor): PEP 249 names the same classes.
    unavailable = (exc.TimeoutError, exc.DisconnectionError, ConnectionError, TimeoutError)
    try:
        import psycopg
        unavailable += (psycopg.OperationalError, psycopg.InterfaceError)
    except ImportError:
        pass
    return isinstance(error, unavailable)


class ErrorLog:
    """Errors as one log line per reason per second, with a count.

    A database outage fails every packet and every refresh: a traceback
    each (5,068 of them in 20 s, 41 MiB of log) buries the one line that
    says what is wrong. The first error of a reason in a second is logged
    (with its traceback if asked, once per reason per process); the others
    in that second are counted, and ``flush`` (every second) logs how many
    there were. ``counts`` holds the totals (metrics). Reasons are a fixed
    vocabulary, so the tables stay small."""

    def __init__(self, logger: logging.Logger = log, interval_s: float = 1.0):
        self._log = logger
        self._interval_s = interval_s
        self.counts: dict[str, int] = {}
        self._windows: dict[str, list] = {}     # reason -> [logged_at, folded since]
        self._traced: set[str] = set()
        self._lock = threading.Lock()

    def error(self, reason: str, context: str = "", error: BaseException | None = None,
              traceback: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            self.counts[reason] = self.counts.get(reason, 0) + 1
            window = self._windows.get(reason)
            if window is not None and now - window[0] < self._interval_s:
                window[1] += 1
                return
            folded = window[1] if window is not None else 0
            self._windows[reason] = [now, 0]
            trace = traceback and error is not None and reason not in self._traced
            if trace:
                self._traced.add(reason)
        self._log.error("radius.error reason=%s%s%s%s", reason,
                        f" {context}" if context else "",
                        f" error={describe(error)}" if error is not None else "",
                        f" repeated={folded}" if folded else "",
                        exc_info=error if trace else None)

    def flush(self) -> None:
        """Log the count of errors folded into windows that have closed."""
        now = time.monotonic()
        due = []
        with self._lock:
            for reason, window in self._windows.items():
                if window[1] and now - window[0] >= self._interval_s:
                    due.append((reason, window[1]))
                    window[:] = [now, 0]
        for reason, folded in due:
            self._log.error("radius.error reason=%s repeated=%s", reason, folded)


class DuplicateCache:
    """RFC 5080 §2.2.2: an identical request inside the window gets the
    cached reply instead of being processed again.

    Bounded by two generations of plain dicts: new entries go into the
    recent one, and when it holds half of ``limit`` entries or half of
    ``max_bytes`` (requests of up to 4 KiB each) it becomes the older one
    and the one before is dropped (the window is checked by time stamp on
    every hit). An ordered dict with eviction per insert cost a tenth of an
    Access-Request's handling."""

    RAW, REPLY, SIZE = 1, 2, 3

    def __init__(self, window_s: float, limit: int = 65536, max_bytes: int = 32 << 20):
        self.window_s = window_s
        self.limit = limit
        self.max_bytes = max_bytes
        self._generation = max(1, limit // 2)
        self._generation_bytes = max(1, max_bytes // 2)
        self._recent: dict[tuple, list] = {}
        self._older: dict[tuple, list] = {}
        self._recent_bytes = self._older_bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._recent) + len(self._older)

    @property
    def bytes(self) -> int:
        """What the entries hold, requests and replies and their overhead (at
        most; see put)."""
        return self._recent_bytes + self._older_bytes

    def _forget(self, key: tuple) -> None:
        entry = self._recent.pop(key, None)
        if entry is not None:
            self._recent_bytes -= entry[self.SIZE]
        entry = self._older.pop(key, None)
        if entry is not None:
            self._older_bytes -= entry[self.SIZE]

    @staticmethod
    def key(address, packet: wire.Packet) -> tuple:
        return (address, packet.code, packet.identifier, packet.authenticator)

    @staticmethod
    def key_of_datagram(address, data: bytes) -> tuple:
        """``key`` from the datagram's header, before it is decoded."""
        return (address, data[0], data[1], data[4:20])

    def get(self, key: tuple, raw: bytes) -> bytes | None | bool:
        """The cached reply; True if the request is known but not yet
        answered (in flight); None if new."""
        with self._lock:
            entry = self._recent.get(key)
            if entry is None:
                entry = self._older.get(key)
                if entry is None:
                    return None
            if time.monotonic() - entry[0] > self.window_s or entry[1] != raw:
                self._forget(key)
                return None
            reply = entry[2]
            return reply if reply is not None else True

    def put(self, key: tuple, raw: bytes, reply: bytes | None, reply_size: int = 0) -> list:
        """Remember the request; returns its entry [stamp, raw, reply, size],
        which the accounting writer completes in place once the record is
        stored (``entry[REPLY] = reply``), voids if it was not (``entry[RAW]
        = b""``: a retransmit is then processed afresh), or marks refused
        (``entry[REPLY] = False``: a retransmit is dropped). ``reply_size``:
        the size of the reply to come, when ``reply`` is None."""
        size = ENTRY_OVERHEAD + len(raw) + (len(reply) if reply is not None else reply_size)
        entry = [time.monotonic(), raw, reply, size]
        with self._lock:
            # A replaced entry's bytes stay counted until its generation
            # goes (``bytes`` is an upper bound): exact accounting cost
            # a tenth of a microsecond per request more.
            self._older.pop(key, None)
            recent = self._recent
            recent[key] = entry
            self._recent_bytes += size
            if len(recent) >= self._generation or self._recent_bytes >= self._generation_bytes:
                self._older, self._recent = recent, {}
                self._older_bytes, self._recent_bytes = self._recent_bytes, 0
        return entry


def _mppe_attributes(password: str, nt_response: bytes, secret: bytes,
                     authenticator: bytes) -> bytes:
    """RFC 2548 §2.4: the MPPE keys of an MS-CHAPv2 login (RFC 3079), so that
    a PPTP or L2TP NAS can encrypt; encryption allowed, 40 or 128 bits, as
    FreeRADIUS's rlm_mschap sends by default. Each key has its own salt."""
    send, receive = mschap.mppe_keys(password, nt_response)
    first, second = os.urandom(2)
    salts = bytes((first | 0x80, second)), bytes((first | 0x80, second ^ 1))
    return (wire.vendor_attribute(*MS_MPPE_ENCRYPTION_POLICY, wire.integer(1))
            + wire.vendor_attribute(*MS_MPPE_ENCRYPTION_TYPES, wire.integer(6))
            + wire.vendor_attribute(*MS_MPPE_SEND_KEY, wire.salt_encrypt(
                send, secret, authenticator, salts[0]))
            + wire.vendor_attribute(*MS_MPPE_RECV_KEY, wire.salt_encrypt(
                receive, secret, authenticator, salts[1])))


def tune_process() -> None:
    """For a process that is only a RADIUS server (``abonent serve radius``):
    hand the GIL over every 0.5 ms instead of 5 ms, so that a reply waits
    less behind the writer or the cache refresh (measured: auth p99 at a
    window of 16 went from ~11 ms to ~6 ms on the 2-core box). Not called
    by RadiusServer itself: in ``abonent demo`` it shares a process."""
    sys.setswitchinterval(0.0005)


def _reader_sessionmaker(ctx):
    """Sessions for the reads on the packet path.

    On SQLite the shared engine starts every transaction with BEGIN
    IMMEDIATE (config.db), i.e. takes the write lock even to read; a cache
    miss would then wait behind the collector or the fee run. A plain
    pysqlite connection reads a WAL snapshot without any lock. PostgreSQL
    needs nothing of the kind."""
    if ctx.engine.dialect.name != "sqlite":
        return ctx.Session
    from sqlalchemy import create_engine
    from sqlalchemy.orm import sessionmaker
    engine = create_engine(ctx.engine.url, connect_args={"timeout": 30,
                                                         "check_same_thread": False})
    return sessionmaker(bind=engine, expire_on_commit=False)


def check_settings(settings) -> None:
    """ValueError naming the setting if one of the server's is out of range
    (``abonent serve radius`` checks before it starts anything)."""
    for key, low in (("duplicate_cache_entries", 2), ("duplicate_cache_mb", 1),
                     ("stale_view_s", 0), ("batch_max", 1), ("batch_ms", 0),
                     ("metrics_port", 0)):
        value = settings.get("radius", key)
        if value < low:
            raise ValueError(f"setting radius.{key} must be {low} or more, not {value}")
    if settings.get("radius", "metrics_port") > 65535:
        raise ValueError("setting radius.metrics_port must be a TCP port (0: no metrics)")


class RadiusServer:
    def __init__(self, ctx, host: str | None = None, auth_port: int | None = None,
                 acct_port: int | None = None, reuse_port: bool = False,
                 freeze_heap: bool = False, workers: int = 1, stats_path: str | None = None):
        settings = ctx.settings
        check_settings(settings)
        # Where the counters are written every second (a worker of several;
        # the parent serves their sum, aaa.workers).
        self.stats_path = stats_path
        # Only for a process that is nothing but this server (see _settle).
        self.freeze_heap = freeze_heap
        # Several processes on the same ports (aaa.workers): every one of
        # them, the first included, must set SO_REUSEPORT before binding.
        self.reuse_port = reuse_port
        self.workers = workers          # processes sharing the ports (see _bind)
        self.ctx = ctx
        self.host = host if host is not None else settings.get("radius", "host")
        self._wanted_auth_port = auth_port if auth_port is not None else settings.get(
            "radius", "auth_port")
        self._wanted_acct_port = acct_port if acct_port is not None else settings.get(
            "radius", "acct_port")
        self.interim_interval = settings.get("radius", "interim_interval")
        self.ladder = policies.ladder_from_settings(settings.section("policy"))
        self.redirect_url = settings.get("policy", "redirect_url")
        self.timezone = settings.get("", "timezone")
        self.session_timeout = settings.get("radius", "session_timeout")
        self.batch_s = settings.get("radius", "batch_ms") / 1000.0
        self.batch_max = settings.get("radius", "batch_max")
        window = settings.get("radius", "duplicate_window")
        self.auth_port: int | None = None
        self.acct_port: int | None = None
        self.nas_table: NasTable | None = None
        self._reader = _reader_sessionmaker(ctx)
        self.directory = SubscriberDirectory(self._reader,
                                             stale_s=settings.get("radius", "stale_view_s"))
        entries = settings.get("radius", "duplicate_cache_entries")
        cache_bytes = settings.get("radius", "duplicate_cache_mb") << 20
        self.auth_duplicates = DuplicateCache(window, entries, cache_bytes)
        self.acct_duplicates = DuplicateCache(window, entries, cache_bytes)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lookups: queue.SimpleQueue = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._running = False           # read by the receive loops (see _receive_loop)
        self._threads: list[threading.Thread] = []
        self._auth_socket: socket.socket | None = None
        self._acct_socket: socket.socket | None = None
        self._drop_window_at, self._drop_logged, self._drop_unlogged = 0.0, 0, 0
        self._reply_cache: dict[tuple, bytes] = {}
        self._decisions: dict[tuple[int, str], tuple] = {}
        self._shapes: dict[tuple, tuple] = {}      # see _decide
        self._fast = (FastAccepts(self.directory)
                      if settings.get("radius", "fast_path") and fastpath.available else None)
        # Voice NAS caller checks: caller -> (allowed, reason, valid until).
        self._call_checks: dict[str, tuple[bool, str, float]] = {}
        self.voice_check_ttl_s = settings.get("radius", "voice_check_ttl_s")
        self.stats = dict(auth_accept=0, auth_reject=0, acct_committed=0, dropped=0,
                          auth_received=0, acct_received=0, auth_fast=0, acct_fast=0,
                          auth_duplicates=0, acct_duplicates=0, deferred=0, commits=0,
                          commit_failures=0)
        self.drops: dict[str, int] = {}
        self.errors = ErrorLog()
        self.batch_sizes = metrics.Histogram(metrics.BATCH_BUCKETS)
        self.commit_seconds = metrics.Histogram(metrics.SECONDS_BUCKETS)

    # -- lifecycle -----------------------------------------------------------

    def _bind(self, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        if self.reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((self.host, port))
        if self.reuse_port and self.workers > 1:
            # A worker by NAS address and RADIUS Identifier: one NAS sending
            # from one port (most do) reaches every worker, and a retransmit
            # (same Identifier) the one that saw the original.
            workers.steer(sock, self.workers, payload_byte=1)
        return sock

    def start(self) -> "RadiusServer":
        self.nas_table = NasTable(self._reader)
        self.directory.preload()
        self._auth_socket = self._bind(self._wanted_auth_port)
        self._acct_socket = self._bind(self._wanted_acct_port)
        self.auth_port = self._auth_socket.getsockname()[1]
        self.acct_port = self._acct_socket.getsockname()[1]
        self._stopping.clear()
        self._running = True
        self._threads = [
            threading.Thread(target=self._auth_loop, name="radius-auth", daemon=True),
            threading.Thread(target=self._acct_loop, name="radius-acct", daemon=True),
            threading.Thread(target=self._writer_loop, name="radius-writer", daemon=True),
            threading.Thread(target=self._lookup_loop, name="radius-lookup", daemon=True),
            threading.Thread(target=self._refresh_loop, name="radius-refresh", daemon=True),
        ]
        self._settle()
        for thread in self._threads:
            thread.start()
        log.info("radius.started host=%s auth_port=%s acct_port=%s fast_path=%s",
                 self.host, self.auth_port, self.acct_port,
                 "on" if self._fast is not None else
                 "off" if fastpath.available else "unavailable (aaa._fastauth not built)")
        return self

    def _settle(self) -> None:
        """Keep the caches out of the cyclic garbage collector's way.

        A full (generation 2) collection walks every object, and the
        directory, duplicate and decision caches are hundreds of thousands
        of them: with 5,000 subscribers one pass held the GIL for ~88 ms,
        which is the auth p99. ``gc.freeze()`` moves what exists now to a
        generation the collector never walks; objects are still freed by
        reference counting when dropped, so replaced cache entries go as
        before. Only a reference cycle that becomes garbage after it was
        frozen stays until the process ends (the caches make none). Run at
        start and after every refresh, so the heap the collector walks is
        only what the last second made."""
        if self.freeze_heap:
            gc.collect()
            gc.freeze()

    def stop(self) -> None:
        self._running = False
        self._stopping.set()
        for sock in (self._auth_socket, self._acct_socket):
            if sock is None:
                continue
            # Wakes a thread blocked in recvfrom (Linux: it returns b"").
            # Not a datagram to ourselves: with SO_REUSEPORT workers it may
            # reach another worker, and this one would wait on. Linux
            # answers ENOTCONN for an unconnected UDP socket, and wakes the
            # reader all the same.
            try:
                sock.shutdown(socket.SHUT_RD)
            except OSError:
                pass
        self._queue.put(None)
        self._lookups.put(None)
        for thread in self._threads:
            thread.join(timeout=5)
        for sock in (self._auth_socket, self._acct_socket):
            if sock is not None:
                sock.close()
        self._threads = []
        if self._reader is not self.ctx.Session:
            self._reader.kw["bind"].dispose()
        log.info("radius.stopped")

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def serve_forever(self) -> None:
        self.start()
        try:
            while not self._stopping.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    # -- common checks ---------------------------------------------------------

    def snapshot(self) -> dict:
        """The counters as one plain dict (aaa.metrics)."""
        counters = dict(self.stats)
        counters["stale_answers"] = self.directory.stale_answers
        auth, acct = self.auth_duplicates, self.acct_duplicates
        return {
            "counters": counters, "drops": dict(self.drops), "errors": dict(self.errors.counts),
            "histograms": {"commit_batch_size": self.batch_sizes.snapshot(),
                           "commit_seconds": self.commit_seconds.snapshot()},
            "gauges": {"queue_depth": self._queue.qsize(),
                       "lookup_queue_depth": self._lookups.qsize(),
                       "duplicate_cache_bytes_auth": auth.bytes,
                       "duplicate_cache_bytes_acct": acct.bytes,
                       "duplicate_cache_entries_auth": len(auth),
                       "duplicate_cache_entries_acct": len(acct),
                       "directory_entries": len(self.directory),
                       "directory_view_age_seconds": round(self.directory.view_age(), 3),
                       "database_unavailable": int(self.directory.unavailable())},
        }

    def _publish(self) -> None:
        """Write the snapshot for the parent of several workers (atomically)."""
        if self.stats_path is None:
            return
        temporary = f"{self.stats_path}.tmp"
        try:
            with open(temporary, "w") as handle:
                json.dump(self.snapshot(), handle)
            os.replace(temporary, self.stats_path)
        except OSError as error:
            self.errors.error("stats-file", f"path={self.stats_path}", error)

    def _count_drop(self, reason: str) -> None:
        self.stats["dropped"] += 1
        drops = self.drops
        drops[reason] = drops.get(reason, 0) + 1

    def _drop(self, source, reason: str, client: NasClient | None = None, **context) -> None:
        self._count_drop(reason)
        # A flood of garbage must not become a flood of log lines: at most
        # DROP_LOG_PER_S lines a second, then one line saying how many were
        # not logged.
        now = time.monotonic()
        if now - self._drop_window_at >= 1.0:
            if self._drop_unlogged:
                log.warning("radius.drop_unlogged count=%s", self._drop_unlogged)
            self._drop_window_at, self._drop_logged, self._drop_unlogged = now, 0, 0
        if self._drop_logged >= DROP_LOG_PER_S:
            self._drop_unlogged += 1
            return
        self._drop_logged += 1
        extra = "".join(f" {k}={v}" for k, v in context.items())
        log.warning("radius.drop nas=%s src=%s:%s reason=%s%s",
                    client.name if client else "-", source[0], source[1], reason, extra)

    def _client(self, source, may_load: bool = True) -> NasClient | None:
        """The NAS a datagram came from, or None (dropped). NotCached when
        the NAS table should be re-read first and ``may_load`` is False."""
        client = self.nas_table.lookup(source[0], load=may_load)
        if client is None:
            self._drop(source, "unknown-client")
        return client

    def _defer(self, handle, sock, data: bytes, source, client: NasClient | None = None) -> None:
        """Hand a datagram whose answer needs the database to the lookup thread."""
        if self._lookups.qsize() >= LOOKUP_QUEUE_LIMIT:
            self._drop(source, "lookup-behind", client)
            return None
        self.stats["deferred"] += 1
        self._lookups.put((handle, sock, data, source))
        return None

    def _lookup_loop(self) -> None:
        """Handle deferred datagrams again, now allowed to read the database."""
        while True:
            item = self._lookups.get()
            if item is None:
                return
            handle, sock, data, source = item
            try:
                reply = handle(data, source, True)
            except Exception as error:
                if database_unavailable(error):
                    # No answer: the NAS retransmits (or asks another node).
                    self._count_drop("database-unavailable")
                    self.errors.error("database-unavailable", "lookup", error)
                else:
                    self.errors.error("lookup-failed", f"src={source[0]}:{source[1]}", error,
                                      traceback=True)
                continue
            if reply is not None:
                self._send_all(sock, [(reply, source)])

    # -- authentication ----------------------------------------------------------

    def _receive_loop(self, sock: socket.socket, handle, kind: str) -> None:
        """Read datagrams until stopped; ``handle`` returns a reply to send now,
        or None (no answer, or the accounting writer answers after commit).

        Stopping is read from a plain attribute (``_running``): an Event's
        is_set() is a Python call, twice per datagram."""
        if self._fast is not None and sock.family == socket.AF_INET:
            # recvmmsg (aaa._fastauth): what is queued, up to 16 datagrams,
            # in one system call; their replies leave together (sendmmsg,
            # _send_all) after the last one is handled.
            descriptor, receive_batch = sock.fileno(), fastpath.receive

            def receive():
                return receive_batch(descriptor)
        else:
            recvfrom = sock.recvfrom

            def receive():
                return [recvfrom(4096)]
        stats, received = self.stats, f"{kind}_received"
        while self._running:
            try:
                batch = receive()
            except OSError:
                if not self._running:
                    return
                continue
            if not self._running:
                return
            stats[received] += len(batch)
            replies = []
            for data, source in batch:
                try:
                    reply = handle(data, source, False)
                except Exception as error:  # one bad packet must not stop the server
                    self.errors.error(f"{kind}-failed", f"src={source[0]}:{source[1]}", error,
                                      traceback=True)
                    continue
                if reply is not None:
                    replies.append((reply, source))
            if replies:
                self._send_all(sock, replies)

    def _auth_loop(self) -> None:
        self._receive_loop(self._auth_socket, self.handle_auth, "auth")

    def _message_authenticator_ok(self, request: wire.Packet, client: NasClient,
                                  source) -> bool:
        """BlastRADIUS (CVE-2024-3596) policy, as FreeRADIUS 3.2.5 applies it."""
        present = request.message_authenticator_at is not None
        if present:
            if not wire.message_authenticator_valid(request, client.secret):
                self._drop(source, "bad-message-authenticator", client)
                return False
            if client.require_message_authenticator == "auto":
                self.nas_table.seen_message_authenticator.add(client.id)
            return True
        required = client.require_message_authenticator
        if required == "yes" or (required == "auto"
                                 and client.id in self.nas_table.seen_message_authenticator):
            self._drop(source, "missing-message-authenticator", client)
            return False
        limit = client.limit_proxy_state
        if wire.PROXY_STATE in request.attributes and limit in ("yes", "auto"):
            self._drop(source, "proxy-state-without-message-authenticator", client)
            return False
        return True

    @staticmethod
    def _rotated(client: NasClient, request: wire.Packet, accounting: bool) -> NasClient:
        """During a secret rotation's grace period, a request signed with
        the previous secret is checked and answered with it (an
        Access-Request only when it carries Message-Authenticator: without
        one, nothing tells which secret the NAS used)."""
        if not client.in_grace():
            return client
        if accounting:
            if wire.accounting_authenticator_valid(request, client.secret):
                return client
            previous = wire.accounting_authenticator_valid(request, client.previous_secret)
        else:
            if (request.message_authenticator_at is None
                    or wire.message_authenticator_valid(request, client.secret)):
                return client
            previous = wire.message_authenticator_valid(request, client.previous_secret)
        return dataclasses.replace(client, secret=client.previous_secret) if previous else client

    def handle_auth(self, data: bytes, source, may_load: bool = True) -> bytes | None:
        """One datagram on the auth port → the reply datagram, or None (drop,
        or handed to the lookup thread: ``may_load`` False means this thread
        must not wait for the database)."""
        try:
            client = self._client(source, may_load)
        except NotCached:
            return self._defer(self.handle_auth, self._auth_socket, data, source)
        if client is None:
            return None
        # A voice NAS's requests are caller checks, and during a secret
        # rotation nothing but the Python path tells which secret was used.
        fast = self._fast if not client.spec.voice and not client.in_grace() else None
        if fast is not None:
            reply = fast.answer(data, client, time.monotonic())
            if reply is not None:
                # As below: a retransmit gets what its original got.
                key = DuplicateCache.key_of_datagram(source, data)
                cached = self.auth_duplicates.get(key, data)
                if cached is not None:
                    self.stats["auth_duplicates"] += 1
                    return cached if isinstance(cached, bytes) else None
                self.auth_duplicates.put(key, data, reply)
                self.stats["auth_accept"] += 1
                self.stats["auth_fast"] += 1
                return reply
        generation = self.directory.generation
        try:
            request = wire.decode(data)
        except wire.MalformedPacket as error:
            self._drop(source, "malformed", client, detail=error.reason)
            return None
        client = self._rotated(client, request, accounting=False)
        if request.code == wire.STATUS_SERVER:
            # RFC 5997 §3: Status-Server MUST carry Message-Authenticator.
            if not wire.message_authenticator_valid(request, client.secret):
                self._drop(source, "status-server-without-valid-message-authenticator", client)
                return None
            return wire.encode_reply(wire.ACCESS_ACCEPT, request, client.secret,
                                     message_authenticator=True)
        if request.code != wire.ACCESS_REQUEST:
            self._drop(source, "unexpected-code", client, code=request.code)
            return None
        if not self._message_authenticator_ok(request, client, source):
            return None
        key = DuplicateCache.key(source, request)
        cached = self.auth_duplicates.get(key, request.raw)
        if cached is not None:
            self.stats["auth_duplicates"] += 1
            return cached if isinstance(cached, bytes) else None
        if client.spec.voice:
            return self._check_caller(request, client, key, data, source, may_load)
        try:
            decision, subscriber, extra = self._authorize(request, client, may_load)
        except wire.MalformedPacket as error:
            self._drop(source, "malformed", client, detail=error.reason)
            return None
        except NotCached:
            return self._defer(self.handle_auth, self._auth_socket, data, source, client)
        address = None
        if decision.accept and subscriber.static_ipv4 is None and subscriber.pool:
            if not may_load:    # a lease is a database write
                return self._defer(self.handle_auth, self._auth_socket, data, source, client)
            address = self._lease(subscriber)
            if address is None:
                decision = Decision(False, "pool-exhausted", profile=decision.profile)
        if decision.accept:
            self.stats["auth_accept"] += 1
            code = wire.ACCESS_ACCEPT
            attributes = self._encoded(decision)
            if address is not None:
                attributes += encode("Framed-IP-Address", address)
            attributes += extra
        else:
            self.stats["auth_reject"] += 1
            code = wire.ACCESS_REJECT
            attributes = b""
            log.info("radius.reject nas=%s user=%r reason=%s", client.name,
                     request.text(wire.USER_NAME), decision.reason)
        try:
            reply = wire.encode_reply(code, request, client.secret, attributes,
                                      message_authenticator=True)
        except ValueError:  # the request's Proxy-States leave no room for the answer
            self._drop(source, "reply-too-long", client)
            return None
        self.auth_duplicates.put(key, request.raw, reply)
        if fast is not None and decision.accept and address is None and not extra:
            self._learn_fast(request, client, subscriber, decision, attributes, generation)
        return reply

    def _learn_fast(self, request: wire.Packet, client: NasClient, subscriber, decision,
                    attributes: bytes, generation: int) -> None:
        """Hand an Accept the Python path gave to the cached-Accept path
        (aaa.fastpath) when it was a PAP login that path can repeat: by
        login, with Message-Authenticator, without Proxy-State (the client
        is one handle_auth lets the fast path answer)."""
        if (request.message_authenticator_at is None or wire.PROXY_STATE in request.attributes
                or wire.USER_PASSWORD not in request.attributes or subscriber.password is None):
            return
        name = request.first(wire.USER_NAME)
        if not name or b"\x00" in name:
            return
        # The view this login's Accept came from, while it is fresh (not
        # one found by a binding, nor one answering past its TTL).
        expires = self.directory.fresh_until(("login", name.decode("utf-8", "replace")),
                                             subscriber)
        if expires is None:
            return
        until = decision.valid_until
        self._fast.learn(client, generation, name, subscriber.password.encode(), attributes,
                         expires, None if until is None else
                         until.replace(tzinfo=dt.timezone.utc).timestamp())

    def _check_caller(self, request: wire.Packet, client: NasClient, key, data: bytes,
                      source, may_load: bool) -> bytes | None:
        """A voice NAS's Access-Request asks whether the caller may call
        (misc_radius radius_load_caller_avps: Service-Type SIP-Caller-AVPs,
        User-Name the caller; or Call-Check): Accept or Reject from
        rating.telephony.may_call, no password. The answer for a caller is
        kept ``radius.voice_check_ttl_s`` seconds; a miss is looked up by
        the lookup thread."""
        service = request.first(voice.SERVICE_TYPE)
        service = int.from_bytes(service, "big") if service and len(service) == 4 else None
        caller = voice.caller_of(request)
        if service not in (voice.SIP_CALLER_AVPS, voice.CALL_CHECK):
            allowed, reason = False, f"service-type-{service}"
        elif caller is None:
            allowed, reason = False, "no-caller"
        else:
            held = self._call_checks.get(caller)
            if held is None or held[2] < time.monotonic():
                if not may_load:
                    return self._defer(self.handle_auth, self._auth_socket, data, source, client)
                from rating.telephony import may_call
                with self._reader() as session:
                    allowed, reason = may_call(session, caller, self.ctx.settings)
                if len(self._call_checks) > 100_000:
                    self._call_checks.clear()
                held = self._call_checks[caller] = (
                    allowed, reason, time.monotonic() + self.voice_check_ttl_s)
            allowed, reason = held[0], held[1]
        if allowed:
            self.stats["auth_accept"] += 1
            code = wire.ACCESS_ACCEPT
        else:
            self.stats["auth_reject"] += 1
            code = wire.ACCESS_REJECT
            log.info("radius.reject nas=%s caller=%r reason=%s", client.name, caller, reason)
        reply = wire.encode_reply(code, request, client.secret, message_authenticator=True)
        self.auth_duplicates.put(key, request.raw, reply)
        return reply

    def _encoded(self, decision) -> bytes:
        # Decisions for one subscriber repeat: their wire form is cached
        # (a plain dict: a race only encodes twice).
        cache = self._reply_cache
        attributes = cache.get(decision.attributes)
        if attributes is None:
            if len(cache) > 100_000:
                cache.clear()
            attributes = cache[decision.attributes] = encode_all(decision.attributes)
        return attributes

    def _authorize(self, request: wire.Packet, client: NasClient, may_load: bool = True):
        username = request.text(wire.USER_NAME)
        if username is not None and "\x00" in username:
            username = None
        hidden = request.first(wire.USER_PASSWORD)
        chap = request.first(wire.CHAP_PASSWORD)
        subscriber = self.directory.by_login(username, may_load) if username else None
        valid = False
        extra = b""
        if subscriber is not None:
            chap2 = request.vendor.get(MS_CHAP2_RESPONSE)
            if hidden is not None:
                password = wire.decrypt_password(hidden, client.secret, request.authenticator)
                valid = pap_valid(subscriber, password)
            elif chap is not None:
                challenge = request.first(wire.CHAP_CHALLENGE) or request.authenticator
                valid = chap_valid(subscriber, chap, challenge)
            elif chap2 and request.vendor.get(MS_CHAP_CHALLENGE) \
                    and subscriber.password is not None:
                valid, success = mschap.verify(subscriber.password, username,
                                               request.vendor[MS_CHAP_CHALLENGE][0], chap2[0])
                if valid:
                    # RFC 2548 §2.3.3: the NAS passes this on so that the
                    # client can check the server knew the password too.
                    extra = (wire.vendor_attribute(*MS_CHAP2_SUCCESS, success)
                             + _mppe_attributes(subscriber.password, chap2[0][26:50],
                                                client.secret, request.authenticator))
        else:
            subscriber = self._find_binding(request, username, may_load)
            valid = subscriber is not None and binding_valid(subscriber)
        if not valid or subscriber is None:
            return decide(subscriber, valid, vendor=client.spec,
                          interim_interval=self.interim_interval,
                          session_timeout=self.session_timeout), subscriber, b""
        # The accept for one cached subscriber view is the same until the
        # view changes or an option in it ends; keyed by the view's
        # identity, so a refreshed view decides afresh.
        key = (id(subscriber), client.id)
        held = self._decisions.get(key)
        if held is not None and held[0] is subscriber and (
                held[2] is None or time.time() < held[2]):
            return held[1], subscriber, extra
        decision, until = self._decide(subscriber, client)
        if len(self._decisions) > 200_000:
            self._decisions.clear()
        self._decisions[key] = (subscriber, decision, until)
        return decision, subscriber, extra

    def _decide(self, subscriber, client: NasClient):
        """decide() for an accepted login, and its end (time.time(), or
        None). The decision depends on the view's speed-related fields, not
        on whose they are: subscribers on one tariff in one state share it
        (a reboot storm's first logins are then not each a decide(), ~40 us),
        keyed by those fields, the NAS client and the ladder in force."""
        ladder = policies.ladder_in_force(self.ctx.engine, self.ladder)
        shape = (id(client), id(ladder), subscriber.account_state, subscriber.profile,
                 subscriber.rate_down_kbps, subscriber.rate_up_kbps,
                 subscriber.negative_rate_kbps, subscriber.windows, subscriber.options,
                 subscriber.limit_throttled_until, subscriber.static_ipv4,
                 subscriber.ipv6_prefix)
        try:
            held = self._shapes.get(shape)
        except TypeError:       # a part that cannot be hashed: decide afresh
            shape = held = None
        if held is not None and held[0] is client and held[1] is ladder and (
                held[3] is None or time.time() < held[3]):
            return held[2], held[3]
        decision = decide(subscriber, True, vendor=client.spec,
                          interim_interval=self.interim_interval,
                          session_timeout=self.session_timeout, ladder=ladder,
                          redirect_url=self.redirect_url, timezone=self.timezone)
        until = decision.valid_until
        until = None if until is None else until.replace(tzinfo=dt.timezone.utc).timestamp()
        if shape is not None:
            if len(self._shapes) > 100_000:
                self._shapes.clear()
            self._shapes[shape] = (client, ladder, decision, until)
        return decision, until

    def _lease(self, subscriber) -> str | None:
        """A pool address for this login (a write: pools are shared by nodes)."""
        try:
            with self.ctx.Session() as session, session.begin():
                return pools.allocate(session, subscriber.pool, subscriber.account_id, utcnow())
        except Exception as error:
            if database_unavailable(error):
                raise   # no answer rather than a Reject: the NAS retransmits
            self.errors.error("pool-failed", f"pool={subscriber.pool} "
                              f"account_id={subscriber.account_id}", error, traceback=True)
            return None

    def _find_binding(self, request: wire.Packet, username: str | None,
                      may_load: bool = True):
        """IPoE: Option-82 Agent-Circuit-Id first (it names the port, which
        the subscriber cannot forge), then the MAC address from
        Calling-Station-Id or, as MikroTik's DHCP server sends it, User-Name."""
        circuits = request.vendor.get(AGENT_CIRCUIT_ID)
        if circuits:
            circuit = circuits[0].decode("utf-8", "replace")
            if "\x00" not in circuit:
                found = self.directory.by_circuit_id(circuit, may_load)
                if found is not None:
                    return found
        for text in (request.text(CALLING_STATION_ID), username):
            mac = normalize_mac(text)
            if mac is not None:
                found = self.directory.by_mac(mac, may_load)
                if found is not None:
                    return found
        return None

    # -- accounting ----------------------------------------------------------------

    def _acct_loop(self) -> None:
        self._receive_loop(self._acct_socket, self.handle_acct, "acct")

    def handle_acct(self, data: bytes, source, may_load: bool = True) -> None:
        """Check and queue one Accounting-Request; the writer replies. The
        owner comes from the directory's cache; one it does not hold is
        looked up by the writer (``_resolve_owners``), never here. A plain
        Start, Stop or Interim-Update is decoded, checked and parsed by
        aaa._fastauth.accounting (5-6 us less a request), the rest here;
        both give the same record, reply and drops (a differential test
        holds them to it)."""
        try:
            client = self._client(source, may_load)
        except NotCached:
            return self._defer(self.handle_acct, self._acct_socket, data, source)
        if client is None:
            return
        # The common Start, Stop or Interim-Update, signed with the NAS's
        # secret, in one C call (decode, Request Authenticator, fields,
        # reply); anything else fastpath.accounting returns None for.
        fields = (fastpath.accounting(data, client.secret)
                  if self._fast is not None and not client.spec.voice else None)
        if fields is not None:
            self.stats["acct_fast"] += 1
            request, reply = None, fields[0]
            key = DuplicateCache.key_of_datagram(source, data)
        else:
            try:
                request = wire.decode(data)
            except wire.MalformedPacket as error:
                self._drop(source, "malformed", client, detail=error.reason)
                return
            client = self._rotated(client, request, accounting=True)
            if request.code != wire.ACCOUNTING_REQUEST:
                self._drop(source, "unexpected-code", client, code=request.code)
                return
            if not wire.accounting_authenticator_valid(request, client.secret):
                self._drop(source, "bad-authenticator", client)
                return
            if (request.message_authenticator_at is not None
                    and not wire.message_authenticator_valid(request, client.secret,
                                                             authenticator=bytes(16))):
                self._drop(source, "bad-message-authenticator", client)
                return
            data, reply = request.raw, None
            key = DuplicateCache.key(source, request)
        cached = self.acct_duplicates.get(key, data)
        if cached is not None:
            if isinstance(cached, bytes):
                self.stats["acct_duplicates"] += 1
                self._acct_socket.sendto(cached, source)
            elif cached is False:   # the database refused it (see _commit)
                self._count_drop("commit-rejected")
            return  # in flight: the writer answers once it is stored
        try:
            if fields is not None:
                record = accounting.parse_fields(fields, client.id, utcnow(), self._owner)
            elif client.spec.voice:
                record = voice.parse(request, client.id, client.name, utcnow())
            else:
                record = accounting.parse(request, client.id, utcnow(), self._owner)
        except wire.MalformedPacket as error:
            self._drop(source, getattr(error, "drop_reason", "malformed"), client,
                       detail=error.reason)
            return
        if self._queue.qsize() > self.batch_max * QUEUE_LIMIT_BATCHES:
            self._drop(source, "writer-behind", client)
            return
        if reply is None:
            reply = wire.encode_reply(wire.ACCOUNTING_RESPONSE, request, client.secret)
        entry = self.acct_duplicates.put(key, data, None, len(reply))
        self._queue.put((record, reply, source, entry))

    def _owner(self, username: str):
        if "\ufffd" in username:
            return None
        try:
            subscriber = self.directory.by_login(username, load=False)
        except NotCached:
            return None     # the writer looks it up
        return (subscriber.account_id, subscriber.service_id) if subscriber else None

    def _resolve_owners(self, records: list) -> None:
        """Attach owners the receive thread's cache did not hold: one query
        for the batch (in the writer, which waits for the database anyway)."""
        missing = {r.username for r in records if type(r) is accounting.AcctRecord
                   and r.account_id is None and r.username and "\ufffd" not in r.username}
        if not missing:
            return
        found = self.directory.by_logins(missing)
        for record in records:
            if type(record) is accounting.AcctRecord and record.account_id is None \
                    and record.username:
                subscriber = found.get(record.username)
                if subscriber is not None:
                    record.account_id = subscriber.account_id
                    record.service_id = subscriber.service_id

    def _writer_loop(self) -> None:
        # The group commit holds a request no longer than it must:
        # - it lingers for more records only for what is left of batch_ms
        #   after the time the last batch took to write: once writing takes
        #   batch_ms or longer (a storm), what arrives meanwhile is already
        #   the next batch, and lingering would only leave the connection
        #   idle while every request waits;
        # - a pause of a tenth of batch_ms with nothing new ends the batch:
        #   NASes that answered replies with their next requests have sent
        #   them by then.
        # (bench/radius_acct.py --new-sessions at window 256 on the shared
        # 2-core box: p99 33-60 ms with these and the set-based write, 265 ms
        # before issue 18; neither rule alone moved it beyond that noise.)
        last_write_s = 0.0
        quiet_s = self.batch_s / 10
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + max(0.0, self.batch_s - last_write_s)
            stop = False
            while len(batch) < self.batch_max:
                remaining = deadline - time.monotonic()
                try:
                    item = self._queue.get(timeout=min(remaining, quiet_s)) if remaining > 0 \
                        else self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            started = time.monotonic()
            self._commit(batch)
            last_write_s = time.monotonic() - started
            if stop:
                return

    def _commit(self, batch: list) -> None:
        """Write a batch in one transaction, then answer it.

        If the database is unavailable, nothing is answered; the batch is
        kept and written again every WRITER_BACKOFF_S while its oldest
        request is younger than WRITER_HOLD_S (a standby being promoted,
        a restart: the replies then go out as soon as it is stored, and the
        NAS's retransmits meanwhile are recognised as in flight); after
        that every record waits for its retransmit (the duplicate entries
        are voided).
        If the database refuses what was sent, the batch is split in halves
        and each written on its own, down to the one record it refuses:
        that one is dropped (counted, one log line a second) and its
        retransmits within the duplicate window are refused without a
        write; the others are stored and answered. The writes are
        idempotent (aaa.accounting), so a record written again after a
        failed attempt is not counted twice."""
        records = [item[0] for item in batch]
        started = time.perf_counter()
        try:
            self._resolve_owners(records)
            calls = [r for r in records if type(r) is voice.VoiceRecord]
            with self.ctx.engine.begin() as connection:
                if calls:
                    accounting.apply_batch(connection, [r for r in records
                                                        if type(r) is accounting.AcctRecord])
                    voice.apply_batch(connection, calls, self.ctx.settings)
                else:
                    accounting.apply_batch(connection, records)
        except Exception as error:
            self.stats["commit_failures"] += 1
            if database_unavailable(error):
                self.errors.error("database-unavailable", f"writer records={len(batch)}", error)
                oldest = min(item[3][0] for item in batch)
                if time.monotonic() - oldest < WRITER_HOLD_S \
                        and not self._stopping.wait(WRITER_BACKOFF_S):
                    return self._commit(batch)
                for item in batch:
                    item[3][DuplicateCache.RAW] = b""
                self._stopping.wait(WRITER_BACKOFF_S)
                return
            if len(batch) > 1:
                half = len(batch) // 2
                self._commit(batch[:half])
                self._commit(batch[half:])
                return
            record, _reply, _source, entry = batch[0]
            entry[DuplicateCache.REPLY] = False
            self._count_drop("commit-rejected")
            self.errors.error("commit-rejected", f"nas_id={record.nas_id} "
                              f"acct_session_id={record.acct_session_id!r}", error,
                              traceback=True)
            return
        self.commit_seconds.observe(time.perf_counter() - started)
        self.batch_sizes.observe(len(records))
        self.stats["commits"] += 1
        self.stats["acct_committed"] += len(records)
        for _record, reply, _source, entry in batch:
            entry[DuplicateCache.REPLY] = reply
        self._send_all(self._acct_socket, [(reply, source) for _r, reply, source, _e in batch])

    def _send_all(self, sock: socket.socket, replies: list) -> None:
        """Send (datagram, address) pairs: with sendmmsg (aaa._fastauth), 16
        a system call, where the fast path is on and the socket is IPv4."""
        if self._fast is not None and sock.family == socket.AF_INET:
            for index, number in fastpath.send(sock.fileno(), replies):
                source = replies[index][1]
                self.errors.error("send-failed", f"src={source[0]}:{source[1]}",
                                  OSError(number, os.strerror(number)))
            return
        for reply, source in replies:
            try:
                sock.sendto(reply, source)
            except OSError as error:
                self.errors.error("send-failed", f"src={source[0]}:{source[1]}", error)

    # -- cache refresh -----------------------------------------------------------

    def _refresh_loop(self) -> None:
        # Every second: entries whose account version moved are re-read;
        # every ttl/2 (and every second after a failed read) the whole view
        # is re-read and swapped in at once.
        last_full = time.monotonic()
        while not self._stopping.wait(1.0):
            try:
                self.nas_table.refresh_if_due()
            except Exception as error:
                self.errors.error("nas-refresh-failed", "", error)
            try:
                if (self.directory.failing
                        or time.monotonic() - last_full > self.directory.ttl_s / 2):
                    last_full = time.monotonic()
                    self.directory.preload()
                else:
                    self.directory.refresh_changed()
            except Exception as error:
                self.errors.error("directory-refresh-failed", "", error)
            self.errors.flush()
            self._publish()
            if self.freeze_heap:
                gc.freeze()
