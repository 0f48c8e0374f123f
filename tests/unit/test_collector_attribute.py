"""IP → account attribution by flow time, traffic classes and rollup sums."""

import datetime as dt
import ipaddress

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from collector.attribute import (NO_ACCOUNT, AddressTable, Assignment, TrafficClasses,
                                 attribute)
from collector.decode import FLOW_DTYPE
from collector.rollup import Rollup

T0 = dt.datetime(2026, 11, 23, 10, 0)
EPOCH = dt.datetime(1970, 1, 1)


def ts(when: dt.datetime) -> int:
    return int((when - EPOCH).total_seconds())


def make_flows(rows):
    """rows: (src, dst, time, bytes)."""
    out = np.zeros(len(rows), FLOW_DTYPE)
    for i, (src, dst, when, size) in enumerate(rows):
        s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
        out[i]["v6"] = s.version == 6
        for prefix, address in (("src", s), ("dst", d)):
            value = int(address)
            out[i][prefix + "_hi"] = value >> 64 if address.version == 6 else 0
            out[i][prefix + "_lo"] = value & (2**64 - 1)
        out[i]["time"] = ts(when)
        out[i]["bytes"] = size
        out[i]["packets"] = 1
    return out


def lookup(table, address, when):
    flows = make_flows([(address, address, when, 1)])
    return int(table.lookup(flows["src_hi"], flows["src_lo"], flows["v6"], flows["time"])[0])


@pytest.mark.parametrize("direct_map", [True, False])
def test_an_address_that_moves_between_accounts_mid_hour(direct_map):
    table = AddressTable([
        Assignment(1, "100.64.0.7", T0, T0 + dt.timedelta(minutes=20)),
        Assignment(2, "100.64.0.7", T0 + dt.timedelta(minutes=20), T0 + dt.timedelta(minutes=45)),
        Assignment(3, "100.64.0.7", T0 + dt.timedelta(minutes=50), None),
        Assignment(9, "100.64.0.8"),                      # static
    ])
    if not direct_map:       # the binary-search path (many /16s in use)
        table.v4.dense_top = table.v4.dense_flat = None
    assert lookup(table, "100.64.0.7", T0 - dt.timedelta(seconds=1)) == NO_ACCOUNT
    assert lookup(table, "100.64.0.7", T0 + dt.timedelta(minutes=5)) == 1
    assert lookup(table, "100.64.0.7", T0 + dt.timedelta(minutes=20)) == 2
    assert lookup(table, "100.64.0.7", T0 + dt.timedelta(minutes=47)) == NO_ACCOUNT
    assert lookup(table, "100.64.0.7", T0 + dt.timedelta(days=3)) == 3
    assert lookup(table, "100.64.0.8", T0) == 9
    assert lookup(table, "100.64.0.9", T0) == NO_ACCOUNT


def test_lease_wins_over_static_only_while_valid():
    table = AddressTable([Assignment(5, "10.0.0.1"),
                          Assignment(6, "10.0.0.1", T0, T0 + dt.timedelta(hours=1))])
    assert lookup(table, "10.0.0.1", T0 + dt.timedelta(minutes=1)) == 6
    assert lookup(table, "10.0.0.1", T0 + dt.timedelta(hours=2)) == 5


@pytest.mark.parametrize("direct_map", [True, False])
def test_ipv6_prefixes_and_ipv4_prefixes(direct_map):
    table = AddressTable([Assignment(7, "2001:db8:100::/56"), Assignment(8, "2001:db8:200::/64"),
                          Assignment(4, "192.0.2.0/30"), Assignment(5, "10.2.0.0/15")])
    if not direct_map:
        table.v4.dense_top = table.v4.dense_flat = None
    assert lookup(table, "10.2.0.0", T0) == 5 and lookup(table, "10.3.255.255", T0) == 5
    assert lookup(table, "10.4.0.0", T0) == NO_ACCOUNT
    assert lookup(table, "10.1.255.255", T0) == NO_ACCOUNT
    assert lookup(table, "2001:db8:100:ff::1", T0) == 7
    assert lookup(table, "2001:db8:101::1", T0) == NO_ACCOUNT
    assert lookup(table, "2001:db8:200::abcd", T0) == 8
    assert lookup(table, "192.0.2.3", T0) == 4
    assert lookup(table, "192.0.2.4", T0) == NO_ACCOUNT


def test_attribute_directions_classes_and_unattributed_bytes():
    table = AddressTable([Assignment(1, "100.64.0.1"), Assignment(2, "100.64.0.2"),
                          Assignment(3, "2001:db8:1::/48")])
    classes = TrafficClasses({"local": ["100.64.0.0/10", "10.0.0.0/8"],
                              "peering": ["185.1.0.0/16", "2001:7f8::/32"],
                              "cdn": ["185.1.2.0/24"]})
    when = T0 + dt.timedelta(minutes=7)
    flows = make_flows([
        ("8.8.8.8", "100.64.0.1", when, 1000),         # in, internet
        ("100.64.0.1", "185.1.9.9", when, 200),        # out, peering
        ("185.1.2.3", "100.64.0.2", when, 300),        # in, cdn (more specific)
        ("100.64.0.1", "100.64.0.2", when, 50),        # out for 1 and in for 2, local
        ("2001:7f8::1", "2001:db8:1:2::5", when, 70),  # IPv6 in, peering
        ("8.8.8.8", "1.1.1.1", when, 999),             # nobody's
    ])
    result = attribute(flows, table, classes)
    assert result.unattributed_flows == 1 and result.unattributed_bytes == 999
    got = sorted((int(r["account"]), classes.names[r["class"]], "in out".split()[r["direction"]],
                  int(r["bytes"])) for r in result.rows)
    assert got == [(1, "internet", "in", 1000), (1, "local", "out", 50),
                   (1, "peering", "out", 200), (2, "cdn", "in", 300), (2, "local", "in", 50),
                   (3, "peering", "in", 70)]


def test_rollup_sums_per_account_interval_class_direction():
    table = AddressTable([Assignment(1, "100.64.0.1")])
    classes = TrafficClasses()
    rollup = Rollup()
    start = T0
    for minute, size in [(0, 10), (1, 20), (4, 30), (5, 40), (9, 50), (10, 60)]:
        flows = make_flows([("8.8.8.8", "100.64.0.1", start + dt.timedelta(minutes=minute), size),
                            ("100.64.0.1", "8.8.8.8", start + dt.timedelta(minutes=minute), 1)])
        rollup.add(attribute(flows, table, classes).rows)
    rows = rollup.take(classes.names)
    got = sorted((r["interval_start"], r["direction"], r["bytes"], r["packets"]) for r in rows)
    five = dt.timedelta(minutes=5)
    assert got == [(start, "in", 60, 3), (start, "out", 3, 3),
                   (start + five, "in", 90, 2), (start + five, "out", 2, 2),
                   (start + 2 * five, "in", 60, 1), (start + 2 * five, "out", 1, 1)]
    assert rollup.take(classes.names) == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0, 1, 5, 1000, 2**20, 2**28 - 1]),    # account
                          st.sampled_from([0, 300, 301, 10**9, 2**26 * 300 - 1]),  # time
                          st.integers(0, 3), st.integers(0, 1),                  # class, dir
                          st.sampled_from([0, 1, 40, 2**40, 2**56])),            # bytes
                min_size=1, max_size=80))
def test_rollup_sums_equal_a_dictionary(rows):
    """The packed sort (few key bits used) and the running-sum differences
    give exactly the sums of a dictionary."""
    check_rollup_sums(rows)


def test_rollup_falls_back_when_the_keys_leave_no_room_for_the_row_number():
    """Accounts near 2^28, intervals 2^26 apart, every class bit and 256
    rows: 28 + 26 + 3 + 8 bits do not fit in 64, so the argsort path sums."""
    rows = [(2**28 - 1 if i % 2 else 1, 0 if i % 3 else 2**26 * 300 - 1, 3, i % 2, 2**55 + i)
            for i in range(256)]
    check_rollup_sums(rows, batch=256)


def check_rollup_sums(rows, batch=7):
    rollup = Rollup(compact_at=len(rows) // 2 + 1)
    expected = {}
    for start in range(0, len(rows), batch):
        part = rows[start:start + batch]
        columns = [np.array(c, t) for c, t in zip(zip(*part), ("i8", "i8", "i8", "u1", "u8"))]
        rollup.add_columns(*columns, columns[4] // 2 + 1)
        for account, time, klass, direction, size in part:
            total = expected.setdefault((account, time // 300 * 300, klass, direction), [0, 0])
            total[0] += size
            total[1] += size // 2 + 1
    names = ["internet", "a", "b", "c"]
    got = {(r["account_id"], ts(r["interval_start"]), names.index(r["traffic_class"]),
            ["in", "out"].index(r["direction"])): [r["bytes"], r["packets"]]
           for r in rollup.take(names)}
    assert got == expected


def test_rollup_merges_batches_exactly_across_compactions():
    from collector.attribute import ATTRIBUTED_DTYPE

    rng = np.random.default_rng(7)
    rollup = Rollup(compact_at=50)
    expected = {}
    for _ in range(40):
        rows = np.zeros(int(rng.integers(1, 60)), ATTRIBUTED_DTYPE)
        rows["account"] = rng.integers(1, 30, len(rows))
        rows["time"] = ts(T0) + rng.integers(0, 1800, len(rows))
        rows["class"] = rng.integers(0, 2, len(rows))
        rows["direction"] = rng.integers(0, 2, len(rows))
        rows["bytes"] = rng.integers(0, 10**12, len(rows))
        rows["packets"] = rng.integers(0, 1000, len(rows))
        rollup.add(rows)
        for r in rows.tolist():
            key = (r[0], (r[1] // 300) * 300, r[2], r[3])
            total = expected.setdefault(key, [0, 0])
            total[0] += r[4]
            total[1] += r[5]
    got = {(r["account_id"], ts(r["interval_start"]), ["internet", "local"].index(r["traffic_class"]),
            ["in", "out"].index(r["direction"])): [r["bytes"], r["packets"]]
           for r in rollup.take(["internet", "local"])}
    assert got == expected


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([1, 7, 50, 2**31 - 1, 2**31, 2**40]),  # account
                          st.integers(0, 3), st.integers(0, 255), st.integers(0, 255),
                          st.sampled_from([32, 32, 32, 30, 24, 15])),   # prefix length
                min_size=1, max_size=30),
       st.lists(st.tuples(st.integers(0, 4), st.integers(0, 255), st.integers(0, 255),
                          st.integers(0, 20)),                          # minutes after T0
                min_size=1, max_size=200),
       st.lists(st.tuples(st.integers(60, 70), st.integers(0, 4), st.integers(0, 3),
                          st.integers(0, 15), st.integers(1, 15)),     # lease: start, length
                max_size=6))
def test_direct_map_and_binary_search_agree(assignments, probes, leases):
    """The /16 direct map (owners in the map, leased ranges and owners
    beyond int32 looked up further) answers exactly what the sorted-range
    search answers."""
    items = [Assignment(account, str(ipaddress.ip_network(
        f"10.{block}.{c}.{d}/{length}", strict=False)))
        for account, block, c, d, length in assignments]
    items += [Assignment(account, f"10.{block}.{c}.1", T0 + dt.timedelta(minutes=begin),
                         T0 + dt.timedelta(minutes=begin + length))
              for account, block, c, begin, length in leases]
    dense, search = AddressTable(items), AddressTable(items)
    search.v4.dense_top = search.v4.dense_flat = None
    assert dense.v4.dense_top is not None
    keys = np.array([(10 << 24) | (b << 16) | (c << 8) | d for b, c, d, _ in probes], np.uint64)
    times = np.array([ts(T0 + dt.timedelta(minutes=m)) for *_, m in probes], np.int64)
    zeros = np.zeros(len(keys), np.uint64)
    v6 = np.zeros(len(keys), np.uint8)
    assert dense.lookup(zeros, keys, v6, times).tolist() == \
        search.lookup(zeros, keys, v6, times).tolist()
