"""The RADIUS server's counters as Prometheus metrics.

The packet path counts in plain dicts (``RadiusServer.stats``, ``drops``):
an increment is tens of nanoseconds, a prometheus_client Counter a lock and
a microsecond. ``RadiusServer.snapshot()`` copies them into one plain dict;
``RadiusMetrics`` turns a snapshot into metric families when Prometheus
scrapes. With several worker processes (aaa.workers) each worker writes its
snapshot to a file every second and the parent serves ``merge`` of them,
plus what workers that died had counted, so one scrape covers the node.

Snapshot: {"counters": {name: n}, "drops": {reason: n}, "errors": {reason: n},
"histograms": {name: {"bounds": [...], "counts": [...], "sum": x}},
"gauges": {name: x}}.
"""

from __future__ import annotations

import bisect

from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily)

BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# Gauges where the node's value is the worst worker's, not the sum.
MAX_GAUGES = frozenset({"directory_view_age_seconds", "database_unavailable"})


class Histogram:
    """Fixed buckets, observed from one thread (the writer)."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds):
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)    # the last: above every bound
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def snapshot(self) -> dict:
        return {"bounds": list(self.bounds), "counts": list(self.counts), "sum": self.sum}


def empty() -> dict:
    return {"counters": {}, "drops": {}, "errors": {}, "histograms": {}, "gauges": {}}


def merge(snapshots, gauges: bool = True) -> dict:
    """The sum of several snapshots (gauges in MAX_GAUGES: the largest);
    ``gauges=False`` leaves gauges out (what a stopped worker had)."""
    total = empty()
    for snapshot in snapshots:
        for part in ("counters", "drops", "errors"):
            into = total[part]
            for name, value in snapshot.get(part, {}).items():
                into[name] = into.get(name, 0) + value
        for name, histogram in snapshot.get("histograms", {}).items():
            held = total["histograms"].get(name)
            if held is None or held["bounds"] != histogram["bounds"]:
                total["histograms"][name] = {"bounds": list(histogram["bounds"]),
                                             "counts": list(histogram["counts"]),
                                             "sum": histogram["sum"]}
                continue
            held["counts"] = [a + b for a, b in zip(held["counts"], histogram["counts"])]
            held["sum"] += histogram["sum"]
        if gauges:
            into = total["gauges"]
            for name, value in snapshot.get("gauges", {}).items():
                if name in MAX_GAUGES:
                    into[name] = max(into.get(name, value), value)
                else:
                    into[name] = into.get(name, 0) + value
    return total


# counter name -> (metric, help, labels)
_COUNTERS = {
    "auth_received": ("requests", "Datagrams received", {"port": "auth"}),
    "acct_received": ("requests", "Datagrams received", {"port": "acct"}),
    "auth_accept": ("auth_answers", "Access-Request answers", {"result": "accept"}),
    "auth_reject": ("auth_answers", "Access-Request answers", {"result": "reject"}),
    "auth_fast": ("auth_fast", "Access-Accepts given by the cached-Accept path "
                  "(aaa.fastpath; also counted as accepts)", {}),
    "acct_fast": ("acct_fast", "Accounting-Requests decoded, checked and parsed by the "
                  "compiled path (aaa.fastpath.accounting)", {}),
    "auth_duplicates": ("duplicates", "Retransmits answered from the duplicate cache",
                        {"port": "auth"}),
    "acct_duplicates": ("duplicates", "Retransmits answered from the duplicate cache",
                        {"port": "acct"}),
    "acct_committed": ("acct_committed", "Accounting-Requests stored and answered", {}),
    "dropped": ("dropped", "Datagrams dropped, all reasons", {}),
    "deferred": ("deferred", "Datagrams handed to the lookup thread (a cache miss)", {}),
    "stale_answers": ("stale_answers",
                      "Directory answers from entries past their TTL (database unavailable)", {}),
    "commits": ("commits", "Accounting transactions committed", {}),
    "commit_failures": ("commit_failures", "Accounting transactions that failed", {}),
    "worker_deaths": ("worker_deaths", "Worker processes that died and were restarted", {}),
}

_GAUGES = {
    "queue_depth": ("queue_depth", "Accounting records waiting for the writer", {}),
    "lookup_queue_depth": ("lookup_queue_depth", "Datagrams waiting for the lookup thread", {}),
    "duplicate_cache_bytes_auth": ("duplicate_cache_bytes", "Bytes held by a duplicate cache",
                                   {"port": "auth"}),
    "duplicate_cache_bytes_acct": ("duplicate_cache_bytes", "Bytes held by a duplicate cache",
                                   {"port": "acct"}),
    "duplicate_cache_entries_auth": ("duplicate_cache_entries", "Requests in a duplicate cache",
                                     {"port": "auth"}),
    "duplicate_cache_entries_acct": ("duplicate_cache_entries", "Requests in a duplicate cache",
                                     {"port": "acct"}),
    "directory_entries": ("directory_entries", "Subscriber directory entries", {}),
    "directory_view_age_seconds": ("directory_view_age_seconds",
                                   "Seconds since the directory was last read in full", {}),
    "database_unavailable": ("database_unavailable",
                             "1 while the database cannot be read (auth from the last view)", {}),
    "workers": ("workers", "Worker processes running", {}),
}

_HISTOGRAMS = {
    "commit_batch_size": "Accounting records per committed transaction",
    "commit_seconds": "Seconds to write and commit one accounting transaction",
}


class RadiusMetrics:
    """A prometheus_client collector over ``snapshot()`` (a callable)."""

    PREFIX = "abonent_radius_"

    def __init__(self, snapshot):
        self._snapshot = snapshot

    def collect(self):
        snapshot = self._snapshot()
        families: dict[str, object] = {}

        def family(kind, name, help_text, labels):
            metric = families.get(name)
            if metric is None:
                metric = families[name] = kind(self.PREFIX + name, help_text,
                                               labels=sorted(labels))
            return metric

        counters = snapshot.get("counters", {})
        for key, (name, help_text, labels) in _COUNTERS.items():
            family(CounterMetricFamily, name, help_text, labels).add_metric(
                [labels[k] for k in sorted(labels)], counters.get(key, 0))
        for part, help_text in (("drops", "Datagrams dropped, by reason"),
                                ("errors", "Errors (logged at most once a second), by reason")):
            metric = family(CounterMetricFamily, part, help_text, ["reason"])
            for reason, value in sorted(snapshot.get(part, {}).items()):
                metric.add_metric([reason], value)
        gauges = snapshot.get("gauges", {})
        for key, (name, help_text, labels) in _GAUGES.items():
            if key in gauges:
                family(GaugeMetricFamily, name, help_text, labels).add_metric(
                    [labels[k] for k in sorted(labels)], gauges[key])
        for name, help_text in _HISTOGRAMS.items():
            held = snapshot.get("histograms", {}).get(name)
            if held is None:
                continue
            cumulative, buckets = 0, []
            for bound, count in zip([*held["bounds"], float("inf")], held["counts"]):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)),
                                cumulative))
            metric = HistogramMetricFamily(self.PREFIX + name, help_text)
            metric.add_metric([], buckets, held["sum"])
            families[name] = metric
        yield from families.values()
