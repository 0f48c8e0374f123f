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

import numpy as np
from typing import Mapping, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from collector.attribute import AddressTable, TrafficClasses, attribute, load_address_table
from collector.decode import Counters, Decoder, DecoderLimits, exporter_seed, packet_key
from collector.exporters import ExporterPolicy
from collector.rollup import (DEFAULT_MAX_FLOW_SECONDS, ReplayGuard, Rollup, prune_packets,
                              upsert_rollups)

log = logging.getLogger("abonent.collector")

# Leases that ended longer ago than this are not loaded. Exports normally
# arrive within minutes, but a BRAS that was cut off may flush its cache (or an
# operator may replay saved exports) much later; a week of leases is a few MB.
LEASE_WINDOW = dt.timedelta(days=7)

STAT_NAMES = ("packets", "flows", "drops", "sets_unknown_template", "held_sets_dropped",
              "sequence_lost_flows", "sequence_lost_packets", "unattributed_flows",
              "unattributed_bytes", "attributed_bytes", "replayed_packets",
              "templates_rejected", "templates_evicted", "flushes", "flush_errors",
              "drops_exporter_not_allowed")


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

    def flush(self, session_factory) -> int:
        """Upsert the sums and the packet digests in one transaction."""
        rows = self.rollup.take(self.classes.names)
        digests, self.guard.pending = self.guard.pending, []
        if not rows and not digests:
            return 0
        try:
            with session_factory() as session, session.begin():
                upsert_rollups(session, rows, digests)
        except Exception:
            self.counters.add("flush_errors")
            self.rollup.restore(rows, self.classes.names)
            self.guard.pending = digests + self.guard.pending
            raise
        self.counters.add("flushes")
        return len(rows)

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
              "replay_window_packets")

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


def read_stats(ctx) -> dict:
    """Sum of the stats files of every collector process (``abonent collector stats``)."""
    total: dict = {}
    processes = []
    folder = stats_dir(ctx)
    for path in sorted(folder.glob("stats-*.json")) if folder.exists() else []:
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        processes.append({"pid": document.get("pid"), "updated_at": document.get("updated_at"),
                          "listen": document.get("listen")})
        for name, value in document.get("counters", {}).items():
            total[name] = total.get(name, 0) + value
    for name in STAT_NAMES:
        total.setdefault(name, 0)
    return {"processes": processes, "counters": total}


class CollectorServer:
    """UDP listener in a background thread; ``start()``/``stop()``."""

    def __init__(self, ctx, host: str | None = None, port: int | None = None, *,
                 classes: Mapping[str, Sequence[str]] | TrafficClasses | None = None,
                 flush_seconds: float = 60.0, reload_seconds: float = 60.0,
                 batch_max: int = 2000, batch_ms: float = 20.0,
                 limits: DecoderLimits | None = None, write_stats: bool = True,
                 workers: int = 1, replay_capacity: int = 262_144):
        self.ctx = ctx
        self.host = host or ctx.settings.get("collector", "host")
        self.port = ctx.settings.get("collector", "port") if port is None else port
        if not isinstance(classes, TrafficClasses):
            classes = TrafficClasses(classes)
        settings = ctx.settings
        self.pipeline = Pipeline(classes=classes, limits=limits, replay_capacity=replay_capacity,
                                 policy=ExporterPolicy.from_settings(settings),
                                 max_flow_seconds=settings.get("collector", "max_flow_seconds"))
        self.flush_seconds = flush_seconds
        self.reload_seconds = reload_seconds
        self.batch_max = batch_max
        self.batch_ms = batch_ms
        self.write_stats = write_stats
        self.workers = workers          # processes sharing the port (steer_by_exporter)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._maintainer: threading.Thread | None = None
        self._lock = threading.Lock()
        self.sock: socket.socket | None = None

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> "CollectorServer":
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        if hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        # A deep receive queue rides out a slow batch or a flush. Beyond
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
        with self.ctx.Session() as session:
            self.pipeline.guard.load(session, _utcnow() - dt.timedelta(days=1))
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="collector", daemon=True)
        self._thread.start()
        self._maintainer = threading.Thread(target=self._maintain, name="collector-reload",
                                            daemon=True)
        self._maintainer.start()
        log.info("collector listening on %s:%s", self.host, self.port)
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        if self._maintainer is not None:
            self._maintainer.join(timeout=30)
            self._maintainer = None
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.flush()
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
        with self._lock:
            try:
                written = self.pipeline.flush(self.ctx.Session)
            except Exception as error:
                reason = str(getattr(error, "orig", None) or error).splitlines()[0][:300]
                log.error("collector flush failed (%s: %s); sums kept for the next attempt",
                          type(error).__name__, reason)
                return 0
        return written

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
            return self.pipeline.stats()

    def _run(self) -> None:
        sock = self.sock
        assert sock is not None
        next_flush = time.monotonic() + self.flush_seconds
        receive = sock.recvfrom
        while not self._stop.is_set():
            # Drain what the kernel holds (non-blocking: one syscall per
            # datagram), then process it as one batch; sleep in select()
            # only when the queue is empty.
            batch = []
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
            if not batch:
                try:
                    select.select([sock], [], [], self.batch_ms / 1000)
                except (OSError, ValueError):
                    if self._stop.is_set():
                        return
                    raise
            if batch:
                with self._lock:
                    try:
                        self.pipeline.ingest(batch)
                    except Exception:   # never die on input; count and go on
                        log.exception("collector batch failed")
                        self.pipeline.counters.add("drops", len(batch))
            now = time.monotonic()
            if now >= next_flush:
                self.flush()
                self._write_stats()
                next_flush = now + self.flush_seconds

    def _maintain(self) -> None:
        """Reload the address table and prune old packet digests, off the receive path."""
        next_prune = time.monotonic() + 3600
        while not self._stop.wait(self.reload_seconds):
            try:
                self.reload()
            except Exception:
                log.exception("collector address table reload failed")
            if time.monotonic() >= next_prune:
                try:
                    with self.ctx.Session() as session, session.begin():
                        prune_packets(session, _utcnow() - dt.timedelta(days=1))
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
                        "updated_at": _utcnow().isoformat() + "Z", "counters": self.stats()}
            temporary = path.with_suffix(".tmp")
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
    return {name: counters[name] for name in ("packets", "flows", "drops")}
