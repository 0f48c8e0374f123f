"""The collector at sustained line rate, side by side with nfdump's nfcapd (issue 20).

    python bench/collector_line_rate.py [--protocols 5,9,10] [--rates 0.5,1,2,3,4]
        [--seconds 60] [--workers 1] [--flush-seconds S] [--subscribers 100000]
        [--collectors nfcapd,abonent] [--keep-going] [--json]

(--json: the lines below on stderr as they come, one JSON document on stdout.)

For each protocol and each rung of the rate ladder (millions of flows/s),
nfcapd (Debian ``nfdump``) and then ``abonent serve collector`` (once per
``--workers`` value) each receive the same exports for ``--seconds``: the
C exporter bench/flowgen.c (compiled on first use) sends from two loopback
exporters (127.0.0.2 and one the collector's steering gives to another
worker than 127.0.0.2's: 127.0.0.4 with 2 workers), every packet unique (gap-free, increasing
sequence numbers per exporter, flow fields from a PRNG seeded per rung), a
subscriber of ``--subscribers`` (100.64.0.0/10, one account and static
address each in a scratch PostgreSQL database) on one side of every flow.

After the exporter stops, the collector gets up to ``--drain-seconds`` to
empty its socket queue, then SIGTERM; the time from SIGTERM to exit is the
stop time. What was kept:
- nfcapd: the flows and bytes in the file it wrote (``nfdump -R DIR -I``);
- abonent: ``sum(bytes)`` of ``traffic_rollups`` against the octets sent
  (the figure that must be exact), and the flows ``abonent collector stats
  --json`` counted. If the collector left a spool under its data dir
  (any non-empty folder with "spool" in its name), it is started once more
  on the same data dir and stopped, and what the rollups hold then is
  reported as kept after the replay, beside what was there at the stop.

A rung is lossless when at most ``--max-loss`` (0.1 %) of the flows (nfcapd)
or bytes (abonent) is missing. Per rung it prints sent, kept, loss, the
datagrams the kernel dropped on the collector's socket (/proc/net/udp), the
queue left at SIGTERM, the stop time and the collector's CPU seconds; per
protocol the highest lossless rate of each collector and the ratio to
nfcapd's. Once a collector loses at a rung, its higher rungs are skipped
(``--keep-going`` runs them). A rung at which the exporter could not reach
the rate (below 98 %) is marked ``gen<``: the box, not the collector, set the
figure.

On a 2-core box the exporter, the collector and PostgreSQL share the CPUs,
as they did when issue 20 was measured. nfcapd gets ``--nfcapd-buffer``
bytes of socket buffer (-B), which the kernel caps at net.core.rmem_max
(doubled); abonent asks for 64 MiB with SO_RCVBUFFORCE. The buffer each got
is printed (``ss -uamn``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager, redirect_stdout
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
SUB_BASE = (100 << 24) | (64 << 16)          # 100.64.0.0
EXPORTERS = ("127.0.0.2", "127.0.0.3")     # with one worker; see exporter_addresses()
PROTOCOL_NAMES = {5: "NetFlow v5", 9: "NetFlow v9", 10: "IPFIX"}
GENERATOR_SHORTFALL = 0.98   # below this share of the asked rate the rung is the box's


# -- pure pieces (tests/unit/test_bench_line_rate.py) ------------------------------

def parse_nfdump_stat(text: str) -> dict:
    """``nfdump -I`` output → {"flows", "bytes", "packets", "sequence_failures"}."""
    wanted = {"Flows": "flows", "Bytes": "bytes", "Packets": "packets",
              "Sequence failures": "sequence_failures"}
    values = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in wanted and value.strip().isdigit():
            values[wanted[name.strip()]] = int(value)
    for key in wanted.values():
        values.setdefault(key, 0)
    return values


def udp_sockets(text: str, port: int) -> list[dict]:
    """The sockets bound to ``port`` in /proc/net/udp: {"queue": bytes
    waiting, "drops": datagrams the kernel dropped}."""
    found = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 13:
            continue
        local = fields[1]
        if int(local.rsplit(":", 1)[1], 16) != port:
            continue
        rx_queue = int(fields[4].split(":")[1], 16)
        found.append({"queue": rx_queue, "drops": int(fields[-1])})
    return found


def loss_fraction(sent: int, kept: int) -> float:
    """Share of ``sent`` missing (never negative: a surplus is not a gain)."""
    if sent <= 0:
        return 0.0
    return max(0.0, (sent - kept) / sent)


def highest_lossless(rungs: list[dict], max_loss: float) -> float | None:
    """The highest rate (flows/s asked) among rungs lost ≤ ``max_loss``
    below which every rung run was lossless too; None if none was."""
    best = None
    for rung in sorted(rungs, key=lambda r: r["rate"]):
        if rung["loss"] > max_loss:
            break
        best = rung["rate"]
    return best


def summarize(results: list[dict], max_loss: float) -> list[dict]:
    """Per protocol and collector: the highest lossless rate and its ratio to nfcapd's."""
    summary = []
    protocols = sorted({r["protocol"] for r in results})
    for protocol in protocols:
        mine = [r for r in results if r["protocol"] == protocol]
        names = list(dict.fromkeys(r["collector"] for r in mine))
        best = {name: highest_lossless([r for r in mine if r["collector"] == name], max_loss)
                for name in names}
        reference = best.get("nfcapd")
        for name in names:
            ratio = None
            if name != "nfcapd" and reference and best[name] is not None:
                ratio = best[name] / reference
            summary.append({"protocol": protocol, "collector": name,
                            "max_lossless_flows_s": best[name], "ratio_to_nfcapd": ratio,
                            "max_stop_s": max((r["stop_s"] for r in mine
                                               if r["collector"] == name
                                               and r["stop_s"] is not None), default=None)})
    return summary


def exporter_addresses(workers: int, count: int = 2, spread=None) -> tuple[str, ...]:
    """``count`` loopback exporters from 127.0.0.2 up that the collector's
    steering (config.workers.spread: a hash of the source address) gives to
    different workers of ``workers``, as far as there are workers; with 2
    workers 127.0.0.2 and 127.0.0.3 hash to the same one, and a 2-worker
    run would measure one worker."""
    if workers <= 1 or spread is None:
        return EXPORTERS[:count] if count <= len(EXPORTERS) else tuple(
            f"127.0.0.{2 + n}" for n in range(count))
    chosen, used = [], set()
    for last in range(2, 255):
        worker = spread(workers, (127 << 24) | last)
        if worker not in used or len(used) >= workers:
            chosen.append(f"127.0.0.{last}")
            used.add(worker)
            if len(chosen) == count:
                break
    return tuple(chosen)


def rung_seed(protocol: int, rate: float) -> int:
    """The same exports for every collector at one rung, other ones at the next."""
    return protocol * 1_000_003 + int(rate)


# -- processes and temporary folders --------------------------------------------------

class Cleanup:
    """Every child process group and folder the bench made, ended and
    removed on exit whatever happens (Ctrl-C, SIGTERM, an error)."""

    def __init__(self):
        self.processes: list[subprocess.Popen] = []
        self.folders: list[str] = []

    def popen(self, args, **kwargs) -> subprocess.Popen:
        process = subprocess.Popen(args, start_new_session=True, **kwargs)
        self.processes.append(process)
        return process

    def folder(self, prefix: str) -> Path:
        path = tempfile.mkdtemp(prefix=prefix)
        self.folders.append(path)
        return Path(path)

    def end(self, process: subprocess.Popen) -> None:
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(10)
        else:
            # The group may outlive its leader (collector workers).
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def close(self) -> None:
        for process in self.processes:
            self.end(process)
        self.processes.clear()
        for path in self.folders:
            shutil.rmtree(path, ignore_errors=True)
        self.folders.clear()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def socket_state(port: int) -> list[dict]:
    return udp_sockets(Path("/proc/net/udp").read_text(), port)


def wait_bound(port: int, process: subprocess.Popen, timeout: float, log: Path,
               count: int = 1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the collector exited ({process.returncode}) before listening:\n"
                               + tail(log))
        if len(socket_state(port)) >= count:
            return
        time.sleep(0.1)
    raise RuntimeError(f"the collector did not listen on {port} in {timeout:.0f} s:\n" + tail(log))


def wait_for_line(path: Path, pattern: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and re.search(pattern, path.read_text(errors="replace")):
            return
        if process.poll() is not None:
            raise RuntimeError(f"the collector exited ({process.returncode}) before listening:\n"
                               + tail(path))
        time.sleep(0.1)
    raise RuntimeError(f"the collector did not say it listens in {timeout:.0f} s:\n" + tail(path))


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def receive_buffer(port: int) -> int | None:
    """The receive buffer (skmem rb) of the first socket on ``port``, per ``ss``."""
    try:
        out = subprocess.run(["ss", "-uamnH", f"sport = :{port}"], capture_output=True,
                             text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"rb(\d+)", out)
    return int(match.group(1)) if match else None


def process_tree(pid: int) -> list[int]:
    from bench.procstat import children

    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children(current))
    return found


def drain(port: int, seconds: float) -> list[dict]:
    """Wait until the sockets on ``port`` hold nothing (at most ``seconds``)."""
    deadline = time.monotonic() + seconds
    state = socket_state(port)
    while any(s["queue"] for s in state) and time.monotonic() < deadline:
        time.sleep(0.05)
        state = socket_state(port)
    return state


def terminate(process: subprocess.Popen, timeout: float) -> tuple[float, bool]:
    """SIGTERM; (seconds until it exited, whether it had to be killed)."""
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
        return time.monotonic() - started, False
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
        return time.monotonic() - started, True


# -- the exporter -------------------------------------------------------------------

def flowgen_binary() -> str:
    """bench/flowgen.c compiled (bench/cbuild.py)."""
    from bench.cbuild import compiled

    binary = compiled("flowgen.c")
    if binary is None:
        raise SystemExit("bench: needs a C compiler (cc or gcc) to build bench/flowgen.c")
    return binary


@dataclass
class Sent:
    packets: int
    flows: int
    bytes: int
    elapsed_s: float
    template_packets: int


def send(cleanup: Cleanup, binary: str, args, protocol: int, port: int, rate: float) -> Sent:
    seed = rung_seed(protocol, rate)
    process = cleanup.popen([binary, str(protocol), str(port), str(rate), str(args.seconds),
                             str(args.subscribers), str(SUB_BASE), ",".join(args.exporters),
                             str(seed)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = process.communicate(timeout=args.seconds + 30)
    except subprocess.TimeoutExpired:
        cleanup.end(process)
        raise RuntimeError("the exporter did not stop in time") from None
    if process.returncode != 0:
        raise RuntimeError(f"the exporter failed ({process.returncode}): {err.strip()}")
    packets, flows, total, elapsed, templates = out.split()
    return Sent(int(packets), int(flows), int(total), float(elapsed), int(templates))


# -- one rung of one collector ------------------------------------------------------------

@dataclass
class Rung:
    protocol: int
    collector: str
    rate: float                  # flows/s asked
    sent_flows: int = 0
    sent_packets: int = 0
    sent_bytes: int = 0
    sent_rate: float = 0.0       # flows/s the exporter reached
    kept_flows: int | None = None
    kept_bytes: int | None = None
    loss: float = 0.0            # share missing (nfcapd: flows; abonent: bytes after replay)
    kernel_drops: int = 0        # datagrams dropped on the collector's sockets
    queue_at_stop: int = 0       # bytes left in the socket queues at SIGTERM
    stop_s: float | None = None
    killed: bool = False
    cpu_s: float | None = None
    rcvbuf: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def lossless(self) -> bool:
        return self.loss <= self.extra.get("max_loss", 0.001)


def run_nfcapd(cleanup: Cleanup, args, binary: str, protocol: int, rate: float) -> Rung:
    rung = Rung(protocol, "nfcapd", rate)
    folder = cleanup.folder("abonent-bench-nfcapd-")
    port = free_udp_port()
    log = folder / "nfcapd.log"
    (folder / "flows").mkdir()
    with open(log, "w") as out:
        process = cleanup.popen(["nfcapd", "-b", "127.0.0.1", "-p", str(port), "-w",
                                 str(folder / "flows"), "-t", "3600",
                                 "-B", str(args.nfcapd_buffer), "-I", "bench"],
                                stdout=out, stderr=subprocess.STDOUT)
    wait_bound(port, process, 10, log)
    sent = drive(rung, cleanup, binary, args, protocol, port, rate, process, [process.pid])
    out = subprocess.run(["nfdump", "-R", str(folder / "flows"), "-I"], capture_output=True,
                         text=True, timeout=120)
    stat = parse_nfdump_stat(out.stdout)
    rung.kept_flows, rung.kept_bytes = stat["flows"], stat["bytes"]
    rung.extra["sequence_failures"] = stat["sequence_failures"]
    rung.loss = loss_fraction(sent.flows, stat["flows"])
    return rung


def _cpu(pids) -> float:
    from bench.procstat import cpu_seconds

    return cpu_seconds(pids)


def _record_sent(rung: Rung, sent: Sent) -> None:
    rung.sent_flows, rung.sent_packets, rung.sent_bytes = sent.flows, sent.packets, sent.bytes
    rung.sent_rate = sent.flows / sent.elapsed_s if sent.elapsed_s else 0.0


def collector_env(url: str, data_dir: Path) -> dict:
    """The environment for ``abonent …``: this tree's code, the scratch
    database, a data dir of the rung's own; no other ABONENT_* setting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ABONENT_")}
    env.update(ABONENT_DATABASE_URL=url, ABONENT_DATA_DIR=str(data_dir),
               ABONENT_LOG_LEVEL="WARNING", PYTHONPATH=str(ROOT))
    return env


def start_abonent(cleanup: Cleanup, args, env: dict, port: int, workers: int, log: Path):
    command = [sys.executable, "-m", "scripts.cli", "serve", "collector", "--host", "127.0.0.1",
               "--port", str(port), "--workers", str(workers)]
    if args.flush_seconds:
        command += ["--flush-seconds", str(args.flush_seconds)]
    with open(log, "a") as out:
        process = cleanup.popen(command, env=env, cwd=str(ROOT), stdout=out,
                                stderr=subprocess.STDOUT)
    wait_for_line(log, r"collector: .*listening", process, args.start_timeout)
    wait_bound(port, process, 10, log, count=workers)
    return process


def abonent_stats(env: dict) -> dict:
    out = subprocess.run([sys.executable, "-m", "scripts.cli", "collector", "stats", "--json"],
                         env=env, cwd=str(ROOT), capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        return {"error": out.stderr.strip()[-300:]}
    return json.loads(out.stdout)


def spooled(data_dir: Path) -> list[Path]:
    """Files in folders named like a spool under the data dir (what the
    collector could not store by the time it stopped)."""
    found = []
    for folder in data_dir.rglob("*"):
        if folder.is_dir() and "spool" in folder.name.lower():
            found.extend(p for p in folder.rglob("*") if p.is_file())
    return found


def rollup_bytes(engine) -> int:
    return rollup_totals(engine)[0]


def rollup_totals(engine) -> tuple[int, int]:
    """(sum of bytes, rows) of the netflow rollups."""
    from sqlalchemy import text

    with engine.connect() as conn:
        total, rows = conn.execute(text("SELECT coalesce(sum(bytes), 0), count(*) "
                                        "FROM traffic_rollups WHERE source = 'netflow'")).one()
    return int(total), int(rows)


def reset_tables(engine) -> None:
    """Empty what one abonent rung wrote: the rollups and every collector_*
    table (replay digests, and whatever the collector keeps there)."""
    from sqlalchemy import text

    with engine.begin() as conn:
        names = conn.execute(text(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
            "AND (tablename LIKE 'collector\\_%' OR tablename = 'traffic_rollups')")).scalars()
        quoted = ", ".join(f'"{n}"' for n in names)
        if quoted:
            conn.execute(text(f"TRUNCATE {quoted}"))


def drive(rung: Rung, cleanup: Cleanup, binary: str, args, protocol: int, port: int,
          rate: float, process, pids: list[int]):
    """Send the rung's exports to a listening collector, let it empty its
    socket, SIGTERM it; the socket's drops and queue, CPU and stop time go
    into ``rung``. Returns what was sent."""
    rung.rcvbuf = receive_buffer(port)
    cpu_before = _cpu(pids)
    sent = send(cleanup, binary, args, protocol, port, rate)
    state = drain(port, args.drain_seconds)
    rung.cpu_s = round(_cpu(pids) - cpu_before, 2)
    rung.kernel_drops = sum(s["drops"] for s in state)
    rung.queue_at_stop = sum(s["queue"] for s in state)
    rung.stop_s, rung.killed = terminate(process, args.stop_timeout)
    _record_sent(rung, sent)
    return sent


def run_abonent(cleanup: Cleanup, args, binary: str, engine, url: str, protocol: int,
                rate: float, workers: int) -> Rung:
    rung = Rung(protocol, f"abonent-w{workers}", rate)
    reset_tables(engine)
    folder = cleanup.folder("abonent-bench-collector-")
    data_dir = folder / "data"
    data_dir.mkdir()
    env = collector_env(url, data_dir)
    port = free_udp_port()
    log = folder / "collector.log"
    process = start_abonent(cleanup, args, env, port, workers, log)
    sent = drive(rung, cleanup, binary, args, protocol, port, rate, process,
                 process_tree(process.pid))
    cleanup.end(process)            # workers the supervisor left behind, if any
    stored, rows = rollup_totals(engine)
    stats = abonent_stats(env)
    counters = stats.get("counters", {})
    rung.extra.update(
        stored_bytes_at_stop=stored, rollup_rows=rows,
        stats_flows=counters.get("flows"), stats_packets=counters.get("packets"),
        stats_processes=len(stats.get("processes", [])),
        flushes=counters.get("flushes"), flush_errors=counters.get("flush_errors"),
        sequence_lost_flows=counters.get("sequence_lost_flows"),
        unattributed_bytes=counters.get("unattributed_bytes"),
        replayed_packets=counters.get("replayed_packets"),
        worker_killed="worker_kill" in log.read_text(errors="replace"))
    spool = spooled(data_dir)
    rung.extra["spool_files"] = len(spool)
    kept = stored
    if spool:
        replay_log = folder / "replay.log"
        again = start_abonent(cleanup, args, env, free_udp_port(), workers, replay_log)
        # The next start applies the spool: give it until the files are gone.
        started = time.monotonic()
        while spooled(data_dir) and time.monotonic() - started < args.stop_timeout:
            time.sleep(0.2)
        rung.extra["replay_s"] = round(time.monotonic() - started, 1)
        rung.extra["replay_stop_s"], _ = terminate(again, args.stop_timeout)
        cleanup.end(again)
        kept = rollup_bytes(engine)
        rung.extra["spool_files_after_replay"] = len(spooled(data_dir))
    rung.kept_bytes = kept
    rung.kept_flows = counters.get("flows")
    rung.extra["bytes_exact"] = kept == sent.bytes
    rung.loss = loss_fraction(sent.bytes, kept)
    if kept > sent.bytes:
        rung.extra["surplus_bytes"] = kept - sent.bytes   # counted twice: a bug, say so
    if rung.killed or rung.loss > args.max_loss:
        rung.extra["log_tail"] = tail(log, 8)
    return rung


# -- the scratch database -------------------------------------------------------------------

@contextmanager
def subscriber_database(base_url: str, subscribers: int):
    """A scratch database (bench.scratch) with ``subscribers`` accounts, each
    with one static address SUB_BASE + n; yields (engine, url)."""
    from ipaddress import IPv4Address

    from sqlalchemy import insert, select, text

    from aaa.models import Service
    from bench import scratch
    from rating.models import Account, Tariff

    with scratch.scratch_database(base_url, prefix="abonent_bench_line") as (engine, url):
        with engine.begin() as conn:
            tariff_id = conn.execute(insert(Tariff).returning(Tariff.id), dict(
                name="Bench", fee=Decimal("600.00"), rate_down_kbps=100_000,
                rate_up_kbps=50_000, negative_rate_kbps=1000)).scalar_one()
            conn.execute(insert(Account), [dict(number=f"{n:09d}", name=f"Bench {n}",
                                                tariff_id=tariff_id)
                                           for n in range(1, subscribers + 1)])
            ids = conn.execute(select(Account.id).order_by(Account.id)).scalars().all()
            conn.execute(insert(Service), [
                dict(account_id=account, kind="ipoe",
                     static_ipv4=str(IPv4Address(SUB_BASE + n)))
                for n, account in enumerate(ids)])
        with engine.connect() as conn:
            conn.execute(text("ANALYZE"))
            conn.commit()
        yield engine, url


# -- output --------------------------------------------------------------------------------

def mflows(rate: float | None) -> str:
    return "—" if rate is None else f"{rate / 1e6:.2f}M"


def print_rung(rung: Rung, max_loss: float) -> None:
    verdict = "ok" if rung.loss <= max_loss else "LOST"
    if rung.sent_rate < GENERATOR_SHORTFALL * rung.rate:
        verdict += " gen<"
    exact = "exact" if rung.extra.get("bytes_exact") else "not exact"
    kept = (f"{rung.kept_flows:,} flows" if rung.collector == "nfcapd"
            else f"{rung.kept_bytes:,} B ({exact})")
    stop = ("—" if rung.stop_s is None
            else f"{rung.stop_s:.1f}s" + (" KILLED" if rung.killed else ""))
    if rung.extra.get("worker_killed"):
        stop += " (a worker killed)"
    spool = (f" spool {rung.extra['spool_files']} files, at stop "
             f"{rung.extra['stored_bytes_at_stop']:,} B, applied by the next start in "
             f"{rung.extra.get('replay_s')} s" if rung.extra.get("spool_files") else "")
    decoded = ""
    if rung.collector != "nfcapd":
        decoded = (f" decoded {rung.extra.get('stats_flows') or 0:,} flows in "
                   f"{rung.extra.get('stats_processes')} proc, "
                   f"{rung.extra.get('flushes')} flushes, "
                   f"{rung.extra.get('rollup_rows', 0):,} rollup rows")
    else:
        decoded = f" seqfail {rung.extra.get('sequence_failures')}"
    print(f"  {PROTOCOL_NAMES[rung.protocol]:10s} {mflows(rung.rate):>6s} {rung.collector:11s} "
          f"sent {rung.sent_flows:,} flows ({mflows(rung.sent_rate)}/s) {rung.sent_bytes:,} B | "
          f"kept {kept} | loss {rung.loss * 100:.3f}% {verdict} | kernel drops "
          f"{rung.kernel_drops:,} pkts, queue at stop {rung.queue_at_stop:,} B | stop {stop} | "
          f"cpu {rung.cpu_s}s rcvbuf {rung.rcvbuf}{decoded}{spool}", flush=True)


def print_summary(summary: list[dict], file=None) -> None:
    print("\nhighest lossless rate (flows/s), ratio to nfcapd, longest stop:", file=file)
    for row in summary:
        ratio = "" if row["ratio_to_nfcapd"] is None else f"  ×{row['ratio_to_nfcapd']:.2f}"
        stop = "" if row["max_stop_s"] is None else f"  stop ≤ {row['max_stop_s']:.1f}s"
        print(f"  {PROTOCOL_NAMES[row['protocol']]:10s} {row['collector']:11s} "
              f"{mflows(row['max_lossless_flows_s']):>6s}{ratio}{stop}", file=file)


# -- main -----------------------------------------------------------------------------------------

def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocols", default="5,9,10", help="5, 9, 10 (IPFIX)")
    parser.add_argument("--rates", default="0.5,1,2,3,4", help="the ladder, millions of flows/s")
    parser.add_argument("--seconds", type=float, default=60.0, help="sending time per rung")
    parser.add_argument("--workers", default="1", help="abonent --workers values, e.g. 1,2")
    parser.add_argument("--flush-seconds", type=float, default=None,
                        help="abonent --flush-seconds (default: the collector's own default)")
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--collectors", default="nfcapd,abonent")
    parser.add_argument("--max-loss", type=float, default=0.001,
                        help="share missing still counted as lossless (0.001 = 0.1 %%)")
    parser.add_argument("--keep-going", action="store_true",
                        help="run a collector's higher rungs after it lost at one")
    parser.add_argument("--drain-seconds", type=float, default=5.0,
                        help="after the exporter stops, wait for the socket queue to empty "
                             "this long at most before SIGTERM")
    parser.add_argument("--stop-timeout", type=float, default=120.0,
                        help="SIGKILL a collector still running this long after SIGTERM")
    parser.add_argument("--start-timeout", type=float, default=180.0)
    parser.add_argument("--nfcapd-buffer", type=int, default=64 << 20,
                        help="nfcapd -B (socket buffer, capped by net.core.rmem_max)")
    parser.add_argument("--url", default=DEFAULT_URL,
                        help="PostgreSQL where the scratch database is created")
    parser.add_argument("--json", action="store_true", help="print one JSON document at the end")
    args = parser.parse_args(argv)
    args.protocol_list = [int(p) for p in args.protocols.split(",")]
    if any(p not in PROTOCOL_NAMES for p in args.protocol_list):
        parser.error("--protocols: 5, 9 or 10")
    args.rate_list = sorted(float(r) * 1e6 for r in args.rates.split(","))
    args.worker_list = [int(w) for w in args.workers.split(",")]
    args.collector_list = [c.strip() for c in args.collectors.split(",")]
    try:
        from config.workers import spread
    except ImportError:
        spread = None
    # The same exporters for every collector of a rung, spread over the most workers run.
    args.exporters = exporter_addresses(max(args.worker_list), spread=spread)
    if not set(args.collector_list) <= {"nfcapd", "abonent"}:
        parser.error("--collectors: nfcapd, abonent")
    if not 0 < args.seconds <= 600:
        parser.error("--seconds: 1..600")
    if "nfcapd" in args.collector_list and not (shutil.which("nfcapd") and shutil.which("nfdump")):
        parser.error("nfcapd and nfdump are not installed (Debian package nfdump)")
    return args


def _raise_interrupt(*_):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)   # even if started ignoring it
    binary = flowgen_binary()
    results: list[Rung] = []
    cleanup = Cleanup()
    real_stdout = sys.stdout
    with ExitStack() as stack:
        if args.json:        # the figures as they come on stderr, one JSON document on stdout
            stack.enter_context(redirect_stdout(sys.stderr))
        stack.callback(cleanup.close)
        engine = url = None
        if "abonent" in args.collector_list:
            started = time.monotonic()
            engine, url = stack.enter_context(subscriber_database(args.url, args.subscribers))
            print(f"scratch database: {args.subscribers:,} subscribers with static addresses "
                  f"in 100.64.0.0/10, {time.monotonic() - started:.1f} s", flush=True)
        names = []
        if "nfcapd" in args.collector_list:
            names.append(("nfcapd", None))
        if "abonent" in args.collector_list:
            names.extend((f"abonent-w{w}", w) for w in args.worker_list)
        flush = (f"every {args.flush_seconds:g} s" if args.flush_seconds
                 else "at the collector's default interval")
        print(f"{args.seconds:g} s per rung, exporters {', '.join(args.exporters)}, "
              f"abonent flushes {flush}, lossless = loss ≤ {args.max_loss * 100:g} %", flush=True)
        rmem_max = int(Path("/proc/sys/net/core/rmem_max").read_text())
        if "nfcapd" in args.collector_list and rmem_max * 2 < args.nfcapd_buffer:
            print(f"note: net.core.rmem_max is {rmem_max:,}, so nfcapd gets a socket buffer of "
                  f"{2 * rmem_max:,} B, not {args.nfcapd_buffer:,} (abonent, as root, forces "
                  f"its own); for equal buffers: sysctl -w net.core.rmem_max="
                  f"{args.nfcapd_buffer}", flush=True)
        try:
            for protocol in args.protocol_list:
                failed: set[str] = set()
                for rate in args.rate_list:
                    for name, workers in names:
                        if name in failed and not args.keep_going:
                            continue
                        if workers is None:
                            rung = run_nfcapd(cleanup, args, binary, protocol, rate)
                        else:
                            rung = run_abonent(cleanup, args, binary, engine, url, protocol,
                                               rate, workers)
                        rung.extra["max_loss"] = args.max_loss
                        results.append(rung)
                        print_rung(rung, args.max_loss)
                        if rung.loss > args.max_loss:
                            failed.add(name)
                        cleanup.close()          # this rung's folders and strays
        except KeyboardInterrupt:
            print("bench: interrupted; the rungs run so far:", file=sys.stderr)
    rows = [dict(asdict(r), lossless=r.lossless) for r in results]
    summary = summarize(rows, args.max_loss)
    if args.json:
        print_summary(summary, file=sys.stderr)
        print(json.dumps({"seconds": args.seconds, "flush_seconds": args.flush_seconds,
                          "subscribers": args.subscribers, "max_loss": args.max_loss,
                          "exporters": args.exporters, "rungs": rows, "summary": summary},
                         default=str, indent=1), file=real_stdout)
    else:
        print_summary(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
