"""Long flows spread over the 5-minute intervals they span (issue 13)."""

import datetime as dt

import numpy as np
from hypothesis import given, settings, strategies as st

from collector.attribute import AddressTable, Assignment
from collector.rollup import Rollup, spread
from collector.server import Pipeline
from tests.netflow_packets import V4_TEMPLATE, data_set, ipfix_packet, template_set, v5_packet

EPOCH = dt.datetime(1970, 1, 1)
T0 = dt.datetime(2026, 3, 2, 12, 0)
T0S = int((T0 - EPOCH).total_seconds())


def by_interval(rows):
    return sorted((int((r["interval_start"] - T0).total_seconds()) // 60, r["direction"],
                   r["bytes"], r["packets"]) for r in rows)


def test_a_long_v5_flow_counts_in_every_interval_it_spans():
    """12:03:00 to 12:18:00, 9,000 octets: 2 minutes in the first interval,
    5 in each of the next two, 3 in the last; by seconds, exactly."""
    pipeline = Pipeline(table=AddressTable([Assignment(1, "100.64.0.1")]))
    export = T0S + 20 * 60
    uptime = 10_000_000
    at = lambda seconds: uptime - (export - (T0S + seconds)) * 1000    # noqa: E731
    packet = v5_packet([dict(src="8.8.8.8", dst="100.64.0.1", bytes=9000, packets=90,
                             first_ms=at(180), last_ms=at(1080)),
                        dict(src="100.64.0.1", dst="8.8.8.8", bytes=50, packets=1,
                             first_ms=at(400), last_ms=at(410))],
                       unix_secs=export, uptime_ms=uptime)
    pipeline.ingest([("192.0.2.1", packet)])
    assert by_interval(pipeline.rollup.take(["internet"])) == [
        (0, "in", 1200, 12), (5, "in", 3000, 30), (5, "out", 50, 1), (10, "in", 3000, 30),
        (15, "in", 1800, 18)]


def test_a_long_ipfix_flow_counts_in_every_interval_it_spans():
    pipeline = Pipeline(table=AddressTable([Assignment(1, "100.64.0.1")]))
    fields = V4_TEMPLATE + [(151, 4)]
    record = dict(src="8.8.8.8", dst="100.64.0.1", bytes=600, packets=6, time=T0S + 150,
                  end=T0S + 750)
    body = data_set(256, fields, [record])
    pipeline.ingest([("192.0.2.1", ipfix_packet([template_set(10, 256, fields), body],
                                                export_time=T0S + 800))])
    assert by_interval(pipeline.rollup.take(["internet"])) == [
        (0, "in", 150, 1), (5, "in", 300, 3), (10, "in", 150, 2)]


def test_a_flow_longer_than_the_cap_is_spread_over_its_last_seconds():
    rollup = Rollup(max_flow_seconds=600)
    one = np.ones(1, np.int64)
    rollup.add_columns(one, np.array([T0S - 86400 * 365]), 0 * one, np.zeros(1, np.uint8),
                       np.array([1000], np.uint64), np.array([10], np.uint64),
                       np.array([T0S + 900]))
    assert by_interval(rollup.take(["internet"])) == [
        (5, "in", 500, 5), (10, "in", 500, 5)]


def test_flows_inside_one_interval_are_left_as_they_are():
    time = np.array([T0S, T0S + 299, T0S + 300], np.int64)
    assert spread(time, time + np.array([299, 0, 10]), np.ones(3, np.uint64),
                  np.ones(3, np.uint64)) is None
    # An end before the start (an exporter's error) is the start.
    assert spread(time, time - 1000, np.ones(3, np.uint64), np.ones(3, np.uint64)) is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 5),                     # account
                          st.integers(0, 3000),                  # start, seconds after T0
                          st.integers(0, 4000) | st.just(-5),    # duration
                          st.integers(0, 2**40) | st.integers(0, 5),
                          st.integers(0, 2**20) | st.integers(0, 3)),
                min_size=1, max_size=60),
       st.sampled_from([300, 1000, 86400]))
def test_spreading_keeps_every_octet_and_packet_in_the_flows_span(flows, cap):
    rollup = Rollup(compact_at=20, max_flow_seconds=cap)
    columns = list(zip(*flows))
    account = np.array(columns[0], np.int64)
    start = T0S + np.array(columns[1], np.int64)
    end = start + np.array(columns[2], np.int64)
    octets, packets = np.array(columns[3], np.uint64), np.array(columns[4], np.uint64)
    rollup.add_columns(account, start, np.zeros(len(flows), np.int64),
                       np.zeros(len(flows), np.uint8), octets, packets, end)
    rows = rollup.take(["internet"])
    for who in set(columns[0]):
        mine = [r for r in rows if r["account_id"] == who]
        assert sum(r["bytes"] for r in mine) == sum(f[3] for f in flows if f[0] == who)
        assert sum(r["packets"] for r in mine) == sum(f[4] for f in flows if f[0] == who)
        spans = [(max(T0S + f[1], T0S + f[1] + f[2] - cap) // 300 * 300,
                  max(T0S + f[1], T0S + f[1] + f[2] - 1) // 300 * 300)
                 for f in flows if f[0] == who]
        for r in mine:
            when = int((r["interval_start"] - EPOCH).total_seconds())
            assert any(a <= when <= b for a, b in spans)
    # Nothing spread: one row per (account, start interval), as before.
    if all(f[2] <= 0 or (f[1] % 300) + f[2] <= 300 for f in flows):
        assert {(r["account_id"], r["interval_start"]) for r in rows} <= {
            (f[0], EPOCH + dt.timedelta(seconds=(T0S + f[1]) // 300 * 300)) for f in flows}
