"""The collector process: a UDP socket, batches through decode → attribute → rollup,
periodic flushes to the database, counters as Prometheus metrics and a stats file.

Several processes may bind the same port (SO_REUSEPORT): the kernel spreads
exporters over them, each keeps its own templates and sums, and all of them
upsert into the same rows.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import select
import socket
import threading
import time
from pathlib import Path

from typing import Mapping, Sequence

import numpy as np

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from sqlalchemy import select as sql_select
from sqlalchemy import text

from collector.attribute import AddressTable, TrafficClasses, attribute, load_address_table
from collector.decode import Counters, Decoder, DecoderLimits, exporter_seed, packet_key
from collector.exporters import ExporterPolicy
from collector.flush import FlushUnit, Spool, release, write_unit
from collector.models import ReplaySet
from collector.rollup import DEFAULT_MAX_FLOW_SECONDS, ReplayGuard, Rollup, prune_replay_sets

log = logging.getLogger("abonent.collector")

# Leases that ended longer ago than this are not loaded. Exports normally
# arrive within minutes, but a BRAS that was cut off may flush its cache (or an
# operator may replay saved exports) much later; a week of leases is a few MB.
LEASE_WINDOW = dt.timedelta(days=7)
# Every PEER_SYNC_S the collector reads the replay sets other collectors
# stored in the last PEER_OVERLAP_S (CollectorServer.sync_peers): the
# overlap covers a flush's transaction committing after a later one.
PEER_SYNC_S = 2.0
PEER_OVERLAP_S = 120.0

STAT_NAMES = ("packets", "flows", "drops", "sets_unknown_template", "held_sets_dropped",
              "sequence_lost_flows", "sequence_lost_packets", "unattributed_flows",
              "unattributed_bytes", "attributed_bytes", "replayed_packets",
              "templates_rejected", "templates_evicted", "flushes", "flush_errors",
              "drops_exporter_not_allowed", "flows_committed", "flows_spooled",
              "flows_recovered", "flows_lost", "spool_errors")


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class Pipeline:
    """Decode, de-duplicate, attribute and sum; no sockets here."""

    def __init__(self, table: AddressTable | None = None,
                 classes: TrafficClasses | None = None,
                 limits: DecoderLimits | None = None, replay_capacity: int = 262_144,
                 policy: ExporterPolicy | None = None,
                 max_flow_seconds: int = DEFAULT_MAX_FLOW_SECONDS):
        self.counters = Counters()
        self.decoder = Decoder(limits or DecoderLimits(), self.counters)
        self.table = table or AddressTable()
        self.classes = classes or TrafficClasses()
        self.rollup = Rollup(max_flow_seconds=max_flow_seconds)
        self.policy = policy if policy is not None and not policy.open else None
        if self.policy is not None:
            self.decoder.forced_sampling = self.policy.forced
        self.guard = ReplayGuard(replay_capacity)
        self._seeds: dict = {}       # exporter -> CRC-32 of its name (packet keys)
        self._detached_flows = 0

    def ingest(self, datagrams: Sequence[tuple[object, bytes]], now: float | None = None) -> int:
        """One batch of ``(exporter, payload)``; returns the number of flows decoded.

        A datagram whose key was seen is a replay and is skipped; the others
        are decoded, and only those that decoded are remembered as seen (and
        written to ``collector_packets`` at the next flush): junk changes
        nothing, so it cannot push real packets out of the replay window.
        """
        fresh = []
        seeds, guard = self._seeds, self.guard
        recent, older = guard.generations()
        batch: dict = {}             # key -> its index in ``fresh`` (in order)
        again = []                   # in-batch repeats: the index of the first copy
        replayed = denied = 0
        policy = self.policy
        if policy is not None:
            policy.trim()
            decisions, decide = policy.decisions, policy.decide
        for exporter, data in datagrams:
            if policy is not None:
                allowed = decisions.get(exporter)
                if allowed is None:
                    allowed = decide(exporter)
                if not allowed:
                    denied += 1
                    continue
            seed = seeds.get(exporter)
            if seed is None:
                if len(seeds) > 65536:
                    seeds.clear()
                seed = seeds[exporter] = exporter_seed(exporter)
            key = packet_key(exporter, data, seed)
            if key in recent or key in older:
                replayed += 1
                continue
            first = batch.get(key)
            if first is not None:
                again.append(first)
                continue
            batch[key] = len(fresh)
            fresh.append((exporter, data))
        keys = list(batch)
        valid = np.zeros(len(fresh), bool)
        flows = self.decoder.decode(fresh, now, valid=valid)
        if valid.all():
            guard.remember(keys)
        else:
            guard.remember([keys[i] for i in np.flatnonzero(valid).tolist()])
        if again:
            # A second copy in the same batch: a replay of a packet that
            # decoded, else the same junk again.
            repeated = int(valid[again].sum())
            replayed += repeated
            junk = len(again) - repeated
            if junk:
                self.counters.add("packets", junk)
                self.counters.add("drops", junk)
                self.counters.add("drops_repeated_invalid", junk)
        if replayed:
            self.counters.add("replayed_packets", replayed)
        if denied:
            self.counters.add("packets", denied)
            self.counters.add("drops", denied)
            self.counters.add("drops_exporter_not_allowed", denied)
        if len(flows):
            result = attribute(flows, self.table, self.classes)
            self.counters.add("unattributed_flows", result.unattributed_flows)
            self.counters.add("unattributed_bytes", result.unattributed_bytes)
            self.counters.add("attributed_bytes", int(result.bytes.sum()))
            self.rollup.add_attributed(result)
        return len(flows)

    def detach_rows(self) -> Rollup:
        """The rows added since the last detach, as they are (O(1), for the
        caller's lock); a new, empty rollup takes their place."""
        rollup, self.rollup = self.rollup, Rollup(compact_at=self.rollup.compact_at,
                                                  max_flow_seconds=self.rollup.max_flow_seconds)
        return rollup

    def detach(self) -> tuple[Rollup, list[bytes], int]:
        """What was summed since the last detach: the rollup, the keys of the
        packets in it and the number of flows. O(1), for the caller's lock;
        ``make_unit`` does the summing outside it."""
        rollup = self.detach_rows()
        digests, self.guard.pending = self.guard.pending, []
        flows = self.counters["flows"]
        detached, self._detached_flows = flows - self._detached_flows, flows
        return rollup, digests, detached

    def make_unit(self, detached: tuple[Rollup, list[bytes], int]) -> FlushUnit | None:
        rollup, digests, flows = detached
        keys, octets, packets = rollup.arrays()
        if not len(keys) and not digests and not flows:
            return None
        return FlushUnit(keys, octets, packets, list(self.classes.names), b"".join(digests),
                         flows, created=time.time())

    def stats(self) -> dict:
        values = {name: self.counters[name] for name in STAT_NAMES}
        values.update({k: v for k, v in self.counters.items()})
        values["templates"] = self.decoder.template_count()
        values["template_bytes"] = self.decoder.template_bytes
        values["held_sets"] = self.decoder.held_sets
        values["address_table_bytes"] = self.table.nbytes
        values["replay_window_packets"] = len(self.guard)
        return values


class PipelineMetrics:
    """A prometheus_client collector reading the pipeline's counters, or
    (``from_files``) the sum of every collector process's stats file."""

    GAUGES = ("templates", "template_bytes", "held_sets", "address_table_bytes",
              "replay_window_packets", "held_packets", "flows_pending", "flows_in_spool",
              "queue_units",
              "queue_rows", "flush_lag_seconds", "last_flush_seconds")

    def __init__(self, pipeline: Pipeline | None = None, stats=None):
        self._stats = stats if stats is not None else pipeline.stats

    @classmethod
    def from_files(cls, ctx) -> "PipelineMetrics":
        return cls(stats=lambda: read_stats(ctx)["counters"])

    def collect(self):
        stats = self._stats()
        for name, value in sorted(stats.items()):
            if name in self.GAUGES:
                metric = GaugeMetricFamily(f"abonent_collector_{name}", name.replace("_", " "))
            else:
                metric = CounterMetricFamily(f"abonent_collector_{name}", name.replace("_", " "))
            metric.add_metric([], value)
            yield metric


def stats_dir(ctx) -> Path:
    return ctx.settings.data_dir / "collector"


def spool_dir(ctx) -> Path:
    return Path(ctx.settings.get("collector", "spool_dir") or stats_dir(ctx) / "spool")


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, TypeError, ValueError, OverflowError):
        return True
    return True


def read_stats(ctx) -> dict:
    """Sum of the stats files of every collector process (``abonent collector stats``),
    and each process's state: running, stopped, or killed (its pid is gone
    and it never wrote its last stats: the flows it held then are lost, at
    most those, plus what arrived in the second after)."""
    total: dict = {}
    processes = []
    folder = stats_dir(ctx)
    for path in sorted(folder.glob("stats-*.json")) if folder.exists() else []:
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        counters = dict(document.get("counters", {}))
        state = document.get("state", "stopped")
        if state == "running" and not _alive(document.get("pid")):
            state = "killed"
            counters["flows_lost"] = (counters.get("flows_lost", 0)
                                      + counters.get("flows_pending", 0))
            counters["flows_pending"] = 0
        processes.append({"pid": document.get("pid"), "updated_at": document.get("updated_at"),
                          "listen": document.get("listen"), "state": state,
                          **{name: counters.get(name, 0) for name in PROCESS_FIELDS}})
        for name, value in counters.items():
            total[name] = total.get(name, 0) + value
    for name in STAT_NAMES:
        total.setdefault(name, 0)
    return {"processes": processes, "counters": total,
            "spool": {"files": len(Spool(spool_dir(ctx)).paths())}}


PROCESS_FIELDS = ("packets", "flows", "flows_committed", "flows_pending", "flows_in_spool",
                  "flows_spooled", "flows_recovered", "flows_lost", "queue_units",
                  "flush_lag_seconds")


class CollectorServer:
    """UDP listener in a background thread; ``start()``/``stop()``.

    Three threads: the receiver (socket → decode → attribute → sums in
    memory; it never touches the database), the flusher (every
    ``flush_seconds`` it takes the sums as a FlushUnit and writes it; it
    also writes the stats file every second) and the maintainer (address
    table reloads, pruning). A unit the database does not take stays queued
    and is retried with backoff; past ``max_pending_rows`` queued rows the
    oldest units go to the local spool. ``stop()`` gives the flusher
    ``stop_seconds`` to write what is left, then spools the rest: nothing
    received is dropped, and the next start applies the spool.
    """

    STATS_SECONDS = 1.0
    SUM_SECONDS = 0.25
    PACE = 3.0
    SUM_ROWS = 1_000_000
    RECEIVER_SUM_ROWS = 16_000_000

    def __init__(self, ctx, host: str | None = None, port: int | None = None, *,
                 classes: Mapping[str, Sequence[str]] | TrafficClasses | None = None,
                 flush_seconds: float | None = None, reload_seconds: float = 60.0,
                 batch_max: int = 512, batch_ms: float = 20.0,
                 limits: DecoderLimits | None = None, write_stats: bool = True,
                 workers: int = 1, replay_capacity: int = 262_144,
                 stop_seconds: float | None = None, hold_seconds: float | None = None):
        self.ctx = ctx
        self.host = host or ctx.settings.get("collector", "host")
        self.port = ctx.settings.get("collector", "port") if port is None else port
        if not isinstance(classes, TrafficClasses):
            classes = TrafficClasses(classes)
        settings = ctx.settings
        self.pipeline = Pipeline(classes=classes, limits=limits, replay_capacity=replay_capacity,
                                 policy=ExporterPolicy.from_settings(settings),
                                 max_flow_seconds=settings.get("collector", "max_flow_seconds"))
        self.flush_seconds = (settings.get("collector", "flush_seconds")
                              if flush_seconds is None else flush_seconds)
        self.stop_seconds = (settings.get("collector", "stop_seconds")
                             if stop_seconds is None else stop_seconds)
        self.max_pending_rows = settings.get("collector", "max_pending_rows")
        # Exporters this collector takes over (see the setting): their
        # datagrams wait in _held until their replay check can know what
        # the collector they came from counted.
        self.hold_seconds = (settings.get("collector", "failover_hold_seconds")
                             if hold_seconds is None else hold_seconds)
        self._exporter_seen: dict = {}      # exporter -> time.monotonic() last heard
        self._holding: dict = {}            # exporter -> hold its datagrams until
        self._held: list[tuple[float, object, bytes]] = []     # (arrived, exporter, data)
        self._held_bytes = 0
        self._held_lock = threading.Lock()
        self.reload_seconds = reload_seconds
        self.batch_max = batch_max
        self.batch_ms = batch_ms
        self.write_stats = write_stats
        self.workers = workers          # processes sharing the port (steer_by_exporter)
        self.spool = Spool(spool_dir(ctx))
        self.origin = f"{socket.gethostname()}:{os.getpid()}"[:64]
        self._stop = threading.Event()
        self._stopping = threading.Event()
        self._wake = threading.Event()          # the writer: work queued, or stop
        self._last_taken = threading.Event()    # stop() queued the last unit
        self._thread: threading.Thread | None = None
        self._flusher: threading.Thread | None = None
        self._writer: threading.Thread | None = None
        self._inflight: FlushUnit | None = None
        self._maintainer: threading.Thread | None = None
        self._lock = threading.Lock()           # the pipeline (receiver vs. takers)
        self._queue_lock = threading.Lock()     # self._queue
        self._write_lock = threading.Lock()     # one writer at a time
        self._queue: list[FlushUnit] = []
        # The receiver only appends rows; the flusher sums them (SUM_ROWS at
        # a time) into _summed, and the receiver sums itself only past
        # RECEIVER_SUM_ROWS (the flusher cannot keep up).
        self.pipeline.rollup.compact_at = self.RECEIVER_SUM_ROWS
        self._summed = Rollup()
        self._sum_lock = threading.Lock()
        self._retry_at = 0.0
        self._backoff = 0.0
        self._last_flush_seconds = 0.0
        self._flows_in_spool = 0
        self._state = "running"
        self.sock: socket.socket | None = None
        self._peer_sets: set[int] = set()       # replay sets of others already learnt

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> "CollectorServer":
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        if hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        # A deep receive queue rides out a slow batch. Beyond
        # net.core.rmem_max only SO_RCVBUFFORCE (33 on Linux, CAP_NET_ADMIN)
        # goes; without the capability the kernel's maximum is what we get.
        for option in (getattr(socket, "SO_RCVBUFFORCE", 33), socket.SO_RCVBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, 64 * 1024 * 1024)
                break
            except OSError:
                continue
        sock.bind((self.host, self.port))
        if self.workers > 1:
            steer_by_exporter(sock, self.workers)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        self.sock = sock
        self.reload()
        # Spooled packets first, then the stored ones: a spool file another
        # collector applies meanwhile is in one or the other.
        spooled = self.spool.peek_digests()
        with self.ctx.Session() as session:
            self.pipeline.guard.load(session, _utcnow() - dt.timedelta(days=1))
            self._peer_sets = set(session.scalars(sql_select(ReplaySet.id).where(
                ReplaySet.seen_at >= _utcnow() - dt.timedelta(seconds=PEER_OVERLAP_S))))
        self.pipeline.guard.seed(spooled)
        recovered = self.spool.claim()
        if recovered:
            log.info("collector: applying %d spooled flushes (%d flows)", len(recovered),
                     sum(u.flows for u in recovered))
        with self._queue_lock:
            self._queue.extend(recovered)
        self._stop.clear()
        self._stopping.clear()
        self._last_taken.clear()
        self._state = "running"
        self._thread = threading.Thread(target=self._run, name="collector", daemon=True)
        self._thread.start()
        self._flusher = threading.Thread(target=self._flush_loop, name="collector-flush",
                                         daemon=True)
        self._flusher.start()
        self._writer = threading.Thread(target=self._write_loop, name="collector-write",
                                        daemon=True)
        self._writer.start()
        self._wake.set()
        self._maintainer = threading.Thread(target=self._maintain, name="collector-reload",
                                            daemon=True)
        self._maintainer.start()
        log.info("collector listening on %s:%s", self.host, self.port)
        return self

    def stop(self) -> None:
        """Stop receiving, write what is held within ``stop_seconds``, spool the rest."""
        deadline = time.monotonic() + self.stop_seconds
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self._held:
            try:
                self.sync_peers()
            except Exception as error:
                log.error("collector: reading other collectors' packets failed (%s)",
                          type(error).__name__)
        self.release_held(everything=True)
        self._stopping.set()
        if self._flusher is not None:
            self._flusher.join(timeout=5)
            self._flusher = None
        self._take()
        self._last_taken.set()
        self._wake.set()
        if self._writer is not None:
            # The writer writes what is queued, then ends; what it has not
            # written by the deadline goes to the spool (a unit it commits
            # after that is recognised by its batch_id and not applied twice).
            self._writer.join(timeout=max(0.0, deadline - time.monotonic()))
            self._writer = None
        self._spool_queued(reason="stop")
        if self._maintainer is not None:
            self._maintainer.join(timeout=1)
            self._maintainer = None
        with self._queue_lock:
            units, self._queue = self._queue, []
        for unit in units:          # spooled: the next start applies them
            release(unit)
        self._state = "stopped"
        self._write_stats()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- work ------------------------------------------------------------------------

    def reload(self) -> None:
        """Reload the address table (static addresses and current leases)."""
        since = _utcnow() - LEASE_WINDOW
        with self.ctx.Session() as session:
            table = load_address_table(session, since=since)
        with self._lock:
            self.pipeline.table = table

    def flush(self) -> int:
        """Take the sums now and write every queued unit; the rows written.
        (The flusher thread does this every ``flush_seconds``.)"""
        self._take()
        return self._drain(force=True)

    def discard(self) -> None:
        """Benches: forget what is held (nothing of it is written)."""
        with self._sum_lock, self._lock:
            self.pipeline.detach()
            self._summed = Rollup()

    def _sum_now(self) -> None:
        """Sum the rows the receiver added so far into the flusher's own
        rollup: the sort runs here, beside the receiver, not in its way."""
        with self._sum_lock:
            with self._lock:
                rows = self.pipeline.detach_rows()
            self._summed.absorb(rows)

    def _take(self) -> None:
        with self._sum_lock:
            with self._lock:
                rows, digests, flows = self.pipeline.detach()
            self._summed.absorb(rows)
            summed, self._summed = self._summed, Rollup()
        unit = self.pipeline.make_unit((summed, digests, flows))
        if unit is not None:
            with self._queue_lock:
                self._queue.append(unit)
            self._wake.set()

    def _drain(self, force: bool = False) -> int:
        """Write queued units, oldest first, until the queue is empty or the
        database refuses; the rows written."""
        written = 0
        with self._write_lock:
            while True:
                with self._queue_lock:
                    if not self._queue:
                        return written
                    unit = self._queue[0]
                if not force and time.monotonic() < self._retry_at:
                    return written
                started = time.monotonic()
                self._inflight = unit
                try:
                    data = unit if unit.keys is not None else Spool.read(unit.path)
                    with self.ctx.Session() as session, session.begin():
                        if session.bind.dialect.name == "postgresql":
                            # A flush stuck on a lock fails in time and is
                            # retried (SQLite: busy_timeout does the same).
                            session.execute(text(
                                f"SET LOCAL statement_timeout = {self._flush_timeout_ms()}"))
                        stored = write_unit(session, data, self.origin, pause=self._pace)
                except Exception as error:
                    self._failed(error)
                    return written
                finally:
                    self._inflight = None
                self._last_flush_seconds = time.monotonic() - started
                self._backoff = 0.0
                with self._queue_lock:
                    if unit in self._queue:
                        self._queue.remove(unit)
                counters = self.pipeline.counters
                if unit.recovered:
                    counters.add("flows_recovered", unit.flows)
                else:
                    counters.add("flows_committed", unit.flows)
                    if unit.path is not None:
                        self._flows_in_spool -= unit.flows
                if unit.path is not None:
                    Spool.remove(unit)
                if stored:
                    counters.add("flushes")
                    written += unit.rows
                else:
                    log.info("collector: flush %s was stored before; skipped", unit.batch_id)

    def _failed(self, error: Exception) -> None:
        self.pipeline.counters.add("flush_errors")
        reason = str(getattr(error, "orig", None) or error).splitlines()[0][:300] \
            if str(error) else type(error).__name__
        self._backoff = min(30.0, max(1.0, self._backoff * 2))
        self._retry_at = time.monotonic() + self._backoff
        log.error("collector flush failed (%s: %s); sums kept, retry in %.0f s",
                  type(error).__name__, reason, self._backoff)

    def _pace(self, seconds: float) -> None:
        """Between the parts of a flush: three times as long a pause as the
        part took (PostgreSQL then takes about a quarter of a core from the
        receiver; a flush of 400,000 rows spreads over ~10 s of the 15 s
        interval), unless the collector is stopping or the writer is behind
        (a further unit waits). With a pause as long as the part, a flush
        took a whole core for seconds on a 2-core box, and the receiver,
        sharing it with the exporters, dropped 1.6 % of NetFlow v9 at 2M
        flows/s (bench/collector_line_rate.py); with three times, none."""
        if self._stopping.is_set():
            return
        with self._queue_lock:
            if len(self._queue) > 1:
                return
        self._stopping.wait(min(seconds * self.PACE, 1.0))

    def _flush_timeout_ms(self) -> int:
        return int(max(30.0, 2 * self.flush_seconds) * 1000)

    def _bound_backlog(self) -> None:
        """Past ``max_pending_rows`` rows waiting in memory, spool the oldest."""
        with self._queue_lock:
            held = sum(u.rows for u in self._queue if u.keys is not None and u.path is None)
        if held > self.max_pending_rows:
            self._spool_queued(reason="backlog", keep_rows=self.max_pending_rows // 2)

    def _spool_queued(self, reason: str, keep_rows: int = 0) -> None:
        """Spool the queued units still only in memory, oldest first, until
        at most ``keep_rows`` rows stay in memory."""
        with self._queue_lock:
            units = [u for u in self._queue if u.path is None and u.keys is not None]
        held = sum(u.rows for u in units)
        for unit in units:
            if keep_rows and (held <= keep_rows or unit is self._inflight):
                # The writer's unit stays in memory (it is reading it).
                if held <= keep_rows:
                    break
                continue
            counters = self.pipeline.counters
            try:
                self.spool.save(unit)
            except OSError as error:
                counters.add("spool_errors")
                counters.add("flows_lost", unit.flows)
                log.error("collector: cannot spool flush %s (%s flows lost): %s",
                          unit.batch_id, unit.flows, error)
                with self._queue_lock:
                    if unit in self._queue:
                        self._queue.remove(unit)
                continue
            held -= unit.rows
            counters.add("flows_spooled", unit.flows)
            self._flows_in_spool += unit.flows
            log.warning("collector: flush %s spooled to %s (%s, %d rows, %d flows)",
                        unit.batch_id, unit.path, reason, unit.rows, unit.flows)
            if reason == "backlog":
                # On disk now: the memory goes, the file is read back when
                # its turn comes.
                unit.keys = unit.octets = unit.packets = None
                unit.digests = b""

    def wait_idle(self, quiet_seconds: float = 0.2, timeout: float = 10.0) -> None:
        """Tests: wait until no datagram has arrived for ``quiet_seconds``."""
        deadline = time.monotonic() + timeout
        last = -1
        while time.monotonic() < deadline:
            current = self.pipeline.counters["packets"] + self.pipeline.counters["replayed_packets"]
            if current == last:
                return
            last = current
            time.sleep(quiet_seconds)

    def stats(self) -> dict:
        with self._lock:
            values = self.pipeline.stats()
        with self._queue_lock:
            queue = list(self._queue)
        values["queue_units"] = len(queue)
        values["queue_rows"] = sum(u.rows for u in queue)
        values["flush_lag_seconds"] = round(time.time() - min(u.created for u in queue), 3) \
            if queue else 0.0
        values["last_flush_seconds"] = round(self._last_flush_seconds, 3)
        values["flows_in_spool"] = self._flows_in_spool
        # Received from an exporter that just came here, not counted yet
        # (collector.failover_hold_seconds).
        values["held_packets"] = len(self._held)
        # Decoded, but neither stored nor on disk yet (in memory).
        values["flows_pending"] = max(0, values["flows"] - values["flows_committed"]
                                      - values["flows_lost"] - self._flows_in_spool)
        return values

    def _run(self) -> None:
        sock = self.sock
        assert sock is not None
        receive = sock.recvfrom
        wait = self.batch_ms / 1000
        drain_until = None
        while True:
            if self._stop.is_set():
                # Told to stop: what the kernel already holds is still
                # taken, for up to a third of stop_seconds, then no more.
                if drain_until is None:
                    drain_until = time.monotonic() + self.stop_seconds / 3
                elif time.monotonic() > drain_until:
                    return
            # Gather a batch: what the kernel holds (non-blocking, one
            # syscall per datagram), and more as it comes until batch_max
            # datagrams or batch_ms have passed. A batch has a fixed cost
            # (a few hundred µs of numpy calls), so a collector that
            # processed whatever was there, a few datagrams at a time,
            # would spend its core on that cost just below the rate it
            # can take. No database work here.
            batch = []
            deadline = None
            while len(batch) < self.batch_max:
                try:
                    while len(batch) < self.batch_max:
                        data, address = receive(65535)
                        batch.append((address[0], data))
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    if self._stop.is_set():
                        return
                    raise
                if len(batch) >= self.batch_max or self._stop.is_set():
                    break
                now = time.monotonic()
                if deadline is None:
                    deadline = now + wait
                elif now >= deadline:
                    break
                try:
                    select.select([sock], [], [], deadline - now)
                except (OSError, ValueError):
                    if self._stop.is_set():
                        return
                    raise
            if not batch:
                if drain_until is not None:
                    return
                continue
            if self.hold_seconds:
                batch = self._hold(batch)
            self._ingest(batch)

    def _ingest(self, batch) -> None:
        if not batch:
            return
        with self._lock:
            try:
                self.pipeline.ingest(batch)
            except Exception:   # never die on input; count and go on
                log.exception("collector batch failed")
                self.pipeline.counters.add("drops", len(batch))

    HELD_BYTES_MAX = 64 * 1024 * 1024

    def _hold(self, batch):
        """The datagrams of ``batch`` to count now; those of an exporter
        that just came to this collector (none for ``hold_seconds``) are
        kept in ``_held`` and counted by ``release_held`` once they are
        that old: a copy of a packet the previous collector counted is
        then known to the replay check. Beyond HELD_BYTES_MAX nothing
        more is held (counted at once, a copy maybe twice)."""
        now = time.monotonic()
        seen, holding = self._exporter_seen, self._holding
        counted = []
        with self._held_lock:
            for exporter, data in batch:
                last = seen.get(exporter)
                seen[exporter] = now
                if last is None or now - last > self.hold_seconds:
                    if exporter not in holding:
                        log.info("collector: exporter %s came here; its datagrams are "
                                 "held %gs (replay check)", exporter, self.hold_seconds)
                    holding[exporter] = now + self.hold_seconds
                until = holding.get(exporter)
                if (until is not None and now < until
                        and self._held_bytes < self.HELD_BYTES_MAX):
                    self._held.append((now, exporter, data))
                    self._held_bytes += len(data)
                else:
                    counted.append((exporter, data))
            if len(seen) > 65536:
                for exporter, last in list(seen.items()):
                    if now - last > self.hold_seconds:
                        del seen[exporter]
        return counted

    def release_held(self, everything: bool = False) -> int:
        """Count the held datagrams that waited ``hold_seconds`` (all of
        them if ``everything``); the number counted."""
        now = time.monotonic()
        with self._held_lock:
            held = self._held
            ripe = len(held) if everything else next(
                (i for i, (arrived, _, _) in enumerate(held)
                 if now - arrived < self.hold_seconds), len(held))
            if not ripe:
                return 0
            taken, self._held = held[:ripe], held[ripe:]
            self._held_bytes -= sum(len(data) for _, _, data in taken)
            for exporter, until in list(self._holding.items()):
                if until <= now:
                    del self._holding[exporter]
        self._ingest([(exporter, data) for _, exporter, data in taken])
        return len(taken)

    def _flush_loop(self) -> None:
        """Take the sums every ``flush_seconds`` (the writer writes them), keep
        the backlog within bounds, write the stats file every second."""
        next_flush = time.monotonic() + self.flush_seconds
        next_stats = 0.0
        while not self._stopping.is_set():
            if time.monotonic() >= next_flush:
                try:
                    self._take()
                except Exception:
                    log.exception("collector: taking the sums failed")
                next_flush = time.monotonic() + self.flush_seconds
            if time.monotonic() >= next_stats:
                self._bound_backlog()
                self._write_stats()
                next_stats = time.monotonic() + self.STATS_SECONDS
            if self.pipeline.rollup.raw_rows >= self.SUM_ROWS:
                self._sum_now()
            self._stopping.wait(min(self.SUM_SECONDS, max(0.01, next_flush - time.monotonic())))

    def _write_loop(self) -> None:
        """Write queued units as they come; after a failure, at the backoff's pace."""
        while True:
            self._wake.wait(max(0.05, min(1.0, self._retry_at - time.monotonic())))
            self._wake.clear()
            last = self._last_taken.is_set()
            self._drain(force=last)
            if last:
                with self._queue_lock:
                    if not self._queue:
                        return

    def sync_peers(self) -> int:
        """Remember the export packets other collectors stored lately (see
        ReplayGuard.load_peers): a replay of one of them reaching this
        collector is then not counted again. The packets learnt.

        Not on SQLite: its file has one host, and a read there would take
        the write lock (config.db) and wait behind the flushes."""
        if self.ctx.engine.dialect.name == "sqlite":
            return 0
        since = _utcnow() - dt.timedelta(seconds=PEER_OVERLAP_S)
        with self.ctx.Session() as session:
            digests, self._peer_sets = self.pipeline.guard.load_peers(
                session, since, self._peer_sets, self.origin)
        if digests:
            with self._lock:
                self.pipeline.guard.seed(digests)
        return len(digests)

    def _maintain(self) -> None:
        """Reload the address table, learn the other collectors' packets and
        prune old replay sets, off the receive path."""
        next_prune = time.monotonic() + 3600
        next_reload = time.monotonic() + self.reload_seconds
        while not self._stop.wait(min(PEER_SYNC_S, self.reload_seconds)):
            try:
                self.sync_peers()
            except Exception as error:
                log.error("collector: reading other collectors' packets failed (%s)",
                          type(error).__name__)
            else:
                # Only after a sync that worked: what other collectors
                # stored by now is known. While the database is away the
                # held datagrams wait (up to HELD_BYTES_MAX).
                self.release_held()
            if time.monotonic() < next_reload:
                continue
            next_reload = time.monotonic() + self.reload_seconds
            try:
                self.reload()
            except Exception:
                log.exception("collector address table reload failed")
            if time.monotonic() >= next_prune:
                try:
                    with self.ctx.Session() as session, session.begin():
                        prune_replay_sets(session, _utcnow() - dt.timedelta(days=1))
                except Exception:
                    log.exception("collector prune failed")
                next_prune = time.monotonic() + 3600

    def _write_stats(self) -> None:
        if not self.write_stats:
            return
        folder = stats_dir(self.ctx)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"stats-{os.getpid()}-{self.port}.json"
            document = {"pid": os.getpid(), "listen": f"{self.host}:{self.port}",
                        "updated_at": _utcnow().isoformat() + "Z", "state": self._state,
                        "counters": self.stats()}
            temporary = path.with_suffix(f".{threading.get_ident()}.tmp")
            temporary.write_text(json.dumps(document))
            temporary.replace(path)
        except OSError:
            log.exception("cannot write collector stats")


def steer_by_exporter(sock: socket.socket, workers: int) -> bool:
    """Give each exporter address one worker, whatever its source port.

    Without this the kernel picks a SO_REUSEPORT socket by a hash of the
    address and the port, so an exporter that sends from several ports
    (or a replay of saved exports from another port) reaches several
    workers: their templates, sequence numbers and replay windows are each
    worker's own, so a replay would be counted twice."""
    from config.workers import steer

    return steer(sock, workers)


def serve_worker(index, args, ready, stop) -> dict:
    """One collector process of ``abonent serve collector --workers N``
    (config.workers): a CollectorServer on the shared port until stopped
    (stopping flushes what it holds)."""
    from config.workers import serve_until_stopped

    settings, host, port, classes, flush_seconds, workers = args
    server = serve_until_stopped(
        settings, lambda ctx: CollectorServer(ctx, host=host, port=port, classes=classes,
                                              flush_seconds=flush_seconds, workers=workers),
        ready, stop, lambda server: server.port)
    counters = server.pipeline.counters
    return {name: counters[name] for name in ("packets", "flows", "drops", "flows_committed",
                                              "flows_spooled", "flows_lost")}
