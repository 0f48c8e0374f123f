"""Collector throughput: flows/s decoded, attributed and aggregated, v5 / v9 / IPFIX.

    python bench/collector_ingest.py [--subscribers 1000000] [--flows 3000000] [--batch 1000]
        [--processes 0] [--loopback] [--loopback-seconds 5]

Loads N attributable subscriber addresses (100.64.0.0/10, one account each)
into the address table and prints its memory. Then, per protocol, builds
export datagrams the way routers send them (v5: 30 records of 48 bytes; v9
and IPFIX: a softflowd-like template of 13 fields, as many records as fit in
1,400 bytes, the template every 20 packets), and times
``collector.server.Pipeline.ingest`` over them in batches: replay check,
decode, attribution of both addresses, 5-minute rollup. Every flow has a
subscriber on one side, so every byte must be attributed; the run checks
that the rollup holds exactly the bytes sent.

On a shared box the wall-clock rate moves with the neighbours' load; the
rate per CPU second (``time.process_time``) moves much less.

Flows here last up to 4 minutes and end at the export, so more than half
of them cross a 5-minute boundary and are counted in both intervals
(``Rollup`` spreads them): the rollup holds more rows than flows' keys.

Then it runs ``--processes`` collectors at once (default one per CPU, as
``abonent serve collector`` runs on PostgreSQL), each with its own table and
its own exporter's datagrams, and prints the flows/s of all of them from the
first start to the last finish.

With ``--loopback`` it also starts a ``CollectorServer`` on a free
127.0.0.1 port and a sender process that sends the same datagrams over UDP
for a bounded time; it prints flows/s received and processed and the
datagrams the kernel dropped (sent minus received).
"""

from __future__ import annotations

import argparse
import multiprocessing
import socket
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collector.attribute import AddressTable  # noqa: E402
from collector.server import Pipeline  # noqa: E402

SUB_BASE = int.from_bytes(bytes([100, 64, 0, 0]), "big")
INTERNET = int.from_bytes(bytes([93, 184, 0, 0]), "big")
NOW = 1_795_000_000
UPTIME = 50_000_000

V5_RECORD = np.dtype([("src", ">u4"), ("dst", ">u4"), ("nexthop", ">u4"), ("input", ">u2"),
                      ("output", ">u2"), ("packets", ">u4"), ("bytes", ">u4"), ("first", ">u4"),
                      ("last", ">u4"), ("sport", ">u2"), ("dport", ">u2"), ("pad", "V4"),
                      ("as", "V8")])
V9_FIELDS = [(8, 4), (12, 4), (22, 4), (21, 4), (1, 4), (2, 4), (10, 4), (14, 4), (7, 2),
             (11, 2), (4, 1), (6, 1), (5, 1)]
IPFIX_FIELDS = [(8, 4), (12, 4), (152, 8), (153, 8), (1, 8), (2, 8), (10, 4), (14, 4), (7, 2),
                (11, 2), (4, 1), (6, 1), (5, 1)]
NAMES = {8: "src", 12: "dst", 22: "first", 21: "last", 152: "first", 153: "last", 1: "bytes",
         2: "packets", 10: "input", 14: "output", 7: "sport", 11: "dport", 4: "proto",
         6: "flags", 5: "tos"}


def record_dtype(fields):
    return np.dtype([(NAMES[ie], f">u{length}") for ie, length in fields])


def random_flows(rng, count, subscribers):
    subs = SUB_BASE + rng.integers(0, subscribers, count, dtype=np.uint64)
    remote = INTERNET + rng.integers(0, 65536, count, dtype=np.uint64)
    inbound = rng.random(count) < 0.7
    src = np.where(inbound, remote, subs)
    dst = np.where(inbound, subs, remote)
    size = rng.integers(40, 1_500_000, count, dtype=np.uint64)
    packets = np.maximum(size // 1000, 1)
    ago_ms = rng.integers(0, 240_000, count, dtype=np.uint64)
    return src, dst, size, packets, ago_ms


def v5_datagrams(rng, flows, subscribers):
    src, dst, size, packets, ago = random_flows(rng, flows, subscribers)
    datagrams = []
    for start in range(0, flows, 30):
        n = min(30, flows - start)
        records = np.zeros(n, V5_RECORD)
        records["src"] = src[start:start + n]
        records["dst"] = dst[start:start + n]
        records["bytes"] = size[start:start + n]
        records["packets"] = packets[start:start + n]
        records["first"] = UPTIME - ago[start:start + n]
        records["last"] = UPTIME
        header = struct.pack(">HHIIIIBBH", 5, n, UPTIME, NOW, 0, start, 0, 0, 0)
        datagrams.append(header + records.tobytes())
    return datagrams, int(size.sum())


def template_datagrams(rng, flows, subscribers, version):
    fields = V9_FIELDS if version == 9 else IPFIX_FIELDS
    dtype = record_dtype(fields)
    per_packet = (1400 - 40 - 4 * len(fields)) // dtype.itemsize
    src, dst, size, packets, ago = random_flows(rng, flows, subscribers)
    template = struct.pack(">HH", 256, len(fields)) + b"".join(
        struct.pack(">HH", ie, length) for ie, length in fields)
    template_set = struct.pack(">HH", 0 if version == 9 else 2, 4 + len(template)) + template
    datagrams, sequence = [], 0
    for index, start in enumerate(range(0, flows, per_packet)):
        n = min(per_packet, flows - start)
        records = np.zeros(n, dtype)
        records["src"] = src[start:start + n]
        records["dst"] = dst[start:start + n]
        records["bytes"] = size[start:start + n]
        records["packets"] = packets[start:start + n]
        if version == 9:
            records["first"] = UPTIME - ago[start:start + n]
            records["last"] = UPTIME
        else:
            records["first"] = NOW * 1000 - ago[start:start + n]
            records["last"] = NOW * 1000
        body = records.tobytes()
        data_set = struct.pack(">HH", 256, 4 + len(body)) + body
        sets = (template_set if index % 20 == 0 else b"") + data_set
        if version == 9:
            header = struct.pack(">HHIIII", 9, n + (index % 20 == 0), UPTIME, NOW, index, 1)
        else:
            header = struct.pack(">HHIII", 10, 16 + len(sets), NOW, sequence, 1)
        sequence += n
        datagrams.append(header + sets)
    return datagrams, int(size.sum())


def build(version, rng, flows, subscribers):
    if version == 5:
        return v5_datagrams(rng, flows, subscribers)
    return template_datagrams(rng, flows, subscribers, version)


def run_in_memory(table, datagrams, total_bytes, batch):
    pipeline = Pipeline(table=table)
    exporter = "192.0.2.1"
    pairs = [(exporter, d) for d in datagrams]
    started, cpu_started = time.perf_counter(), time.process_time()
    flows = 0
    for start in range(0, len(pairs), batch):
        flows += pipeline.ingest(pairs[start:start + batch], now=NOW)
    keys, counted, _ = pipeline.rollup.totals()     # merge every batch's sums
    elapsed = time.perf_counter() - started
    run_in_memory.cpu_seconds = time.process_time() - cpu_started
    stats = pipeline.stats()
    assert stats["drops"] == 0 and stats["unattributed_bytes"] == 0, stats
    assert counted == total_bytes, (counted, total_bytes)
    return flows, elapsed, keys


def _process_share(version, flows, subscribers, batch, seed, barrier, results):
    """One collector process of ``--processes N``: its own address table and
    its own exporter's datagrams (the kernel gives each SO_REUSEPORT
    process whole exporters), timed from a common start."""
    addresses = SUB_BASE + np.arange(subscribers, dtype=np.uint64)
    table = AddressTable.from_static_ipv4(addresses,
                                          np.arange(1, subscribers + 1, dtype=np.int64))
    datagrams, total_bytes = build(version, np.random.default_rng(seed), flows, subscribers)
    barrier.wait(600)
    started = time.monotonic()
    got, _elapsed, keys = run_in_memory(table, datagrams, total_bytes, batch)
    results.put((got, started, time.monotonic(), len(datagrams), keys))


def run_processes(version, flows, subscribers, batch, processes):
    """``processes`` collectors at once, each on flows/processes flows:
    (flows, seconds from the first start to the last finish, datagrams)."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(processes), context.Queue()
    share = flows // processes
    workers = [context.Process(target=_process_share,
                               args=(version, share, subscribers, batch, 100 + i, barrier,
                                     results))
               for i in range(processes)]
    for worker in workers:
        worker.start()
    done = [results.get(timeout=900) for _ in workers]
    for worker in workers:
        worker.join(60)
    total = sum(d[0] for d in done)
    elapsed = max(d[2] for d in done) - min(d[1] for d in done)
    return total, elapsed, sum(d[3] for d in done)


def _sender(port, datagrams, seconds, rate, sent_value):
    """Send for at most ``seconds``; ``rate`` datagrams/s (0: as fast as possible)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 * 1024 * 1024)
    started = time.monotonic()
    deadline = started + seconds
    sent = 0
    target = ("127.0.0.1", port)
    for data in datagrams:
        try:
            sock.sendto(data, target)
        except OSError:
            continue
        sent += 1
        if (sent & 63) == 0:
            now = time.monotonic()
            if now > deadline:
                break
            if rate:
                ahead = sent / rate - (now - started)
                if ahead > 0:
                    time.sleep(ahead)
    sent_value.value = sent


def run_loopback(table, datagrams, seconds, flows_per_datagram, rate_flows=0):
    from config.context import open_context
    from config.migrate import upgrade
    from config.settings import load_settings
    from collector.server import CollectorServer

    with tempfile.TemporaryDirectory() as folder:
        settings = load_settings(environ={"ABONENT_DATA_DIR": folder,
                                          "ABONENT_DATABASE_URL": f"sqlite:///{folder}/b.db"})
        ctx = open_context(settings=settings)
        upgrade(ctx.engine)
        server = CollectorServer(ctx, "127.0.0.1", 0, flush_seconds=3600, reload_seconds=3600,
                                 write_stats=False)
        server.start()
        server.pipeline.table = table
        sent = multiprocessing.Value("q", 0)
        process = multiprocessing.Process(target=_sender,
                                          args=(server.port, datagrams, seconds,
                                                int(rate_flows / flows_per_datagram), sent))
        started = time.perf_counter()
        process.start()
        process.join()
        server.wait_idle(quiet_seconds=0.3)
        elapsed = time.perf_counter() - started - 0.3
        stats = server.stats()
        # The bench's accounts exist only in memory: nothing to write.
        server.discard()
        server.stop()
        ctx.dispose()
    return sent.value, stats["packets"], stats["flows"], elapsed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    parser.add_argument("--flows", type=int, default=3_000_000)
    parser.add_argument("--batch", type=int, default=1000, help="datagrams per ingest call")
    parser.add_argument("--loopback", action="store_true")
    parser.add_argument("--loopback-seconds", type=float, default=5.0)
    parser.add_argument("--loopback-rate", type=float, default=0,
                        help="flows/s the sender paces itself to (0: as fast as it can)")
    parser.add_argument("--protocols", default="5,9,10")
    parser.add_argument("--processes", type=int, default=0,
                        help="also run N collector processes at once, each on its own "
                             "exporters' share, as `abonent serve collector --workers N` "
                             "does (0: one per CPU; 1: skip)")
    args = parser.parse_args(argv)
    from config.workers import cpu_count
    processes = args.processes or cpu_count()
    args.flows = min(args.flows, 20_000_000)

    started = time.perf_counter()
    addresses = SUB_BASE + np.arange(args.subscribers, dtype=np.uint64)
    accounts = np.arange(1, args.subscribers + 1, dtype=np.int64)
    table = AddressTable.from_static_ipv4(addresses, accounts)
    print(f"address table: {args.subscribers:,} subscriber addresses, "
          f"{table.nbytes / 2**20:.1f} MiB, built in {time.perf_counter() - started:.2f} s")
    rng = np.random.default_rng(4)
    for version in (int(v) for v in args.protocols.split(",")):
        name = {5: "NetFlow v5", 9: "NetFlow v9", 10: "IPFIX"}[version]
        datagrams, total_bytes = build(version, rng, args.flows, args.subscribers)
        flows, elapsed, keys = run_in_memory(table, datagrams, total_bytes, args.batch)
        cpu = run_in_memory.cpu_seconds
        print(f"{name:10s} in memory: {flows:,} flows in {len(datagrams):,} datagrams, "
              f"{elapsed:.2f} s → {flows / elapsed:,.0f} flows/s, "
              f"{flows / cpu:,.0f} per CPU second "
              f"(decoded + attributed + aggregated into {keys:,} rollup rows, no loss)")
        if processes > 1:
            total, seconds, count = run_processes(version, args.flows, args.subscribers,
                                                  args.batch, processes)
            print(f"{name:10s} {processes} processes: {total:,} flows in {count:,} datagrams, "
                  f"{seconds:.2f} s → {total / seconds:,.0f} flows/s (each process checked "
                  f"no loss; table per process {table.nbytes / 2**20:.1f} MiB)")
        if args.loopback:
            sent, received, got_flows, seconds = run_loopback(
                table, datagrams, min(args.loopback_seconds, 30), flows / len(datagrams),
                args.loopback_rate)
            print(f"{name:10s} loopback:  sent {sent:,} datagrams, received {received:,} "
                  f"({sent - received:,} dropped by the kernel), {got_flows:,} flows in "
                  f"{seconds:.2f} s → {got_flows / seconds:,.0f} flows/s")


if __name__ == "__main__":
    main()
