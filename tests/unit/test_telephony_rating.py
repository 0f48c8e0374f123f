"""Telephony rating as pure functions: the longest prefix match against a
brute-force reference, increment rounding at the boundaries, number
normalisation, the free rules and the CDR/rate file parsers."""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rating import cdr
from rating.telephony import (NumberRules, PlanRules, Rate, RateTable, billed_seconds,
                              charge_for, normalise, rate_call)
from rating.validate import DomainError

digits = st.text(alphabet="0123456789", min_size=1, max_size=8)


def brute_force(prefixes: list[str], number: str) -> str | None:
    matching = [p for p in prefixes if number.startswith(p)]
    return max(matching, key=len) if matching else None


@settings(max_examples=300, deadline=None)
@given(prefixes=st.lists(digits, min_size=0, max_size=60, unique=True),
       numbers=st.lists(st.text(alphabet="0123456789", min_size=0, max_size=15), max_size=30))
def test_longest_prefix_match_agrees_with_brute_force(prefixes, numbers):
    table = RateTable(Rate(p, f"z{p}", Decimal("1.00")) for p in prefixes)
    # Numbers that share prefixes with the table, not only random ones.
    numbers = numbers + [p + tail for p in prefixes[:10] for tail in ("", "5", "123456")]
    for number in numbers:
        found = table.match(number)
        assert (found.prefix if found else None) == brute_force(prefixes, number)


@pytest.mark.parametrize("first,step,cases", [
    (60, 60, {1: 60, 59: 60, 60: 60, 61: 120, 119: 120, 120: 120, 121: 180}),
    (30, 6, {1: 30, 29: 30, 30: 30, 31: 36, 36: 36, 37: 42, 59: 60, 60: 60, 61: 66}),
    (1, 1, {1: 1, 59: 59, 60: 60, 61: 61}),
    (60, 1, {59: 60, 60: 60, 61: 61}),
])
def test_increment_boundaries(first, step, cases):
    for billsec, expected in cases.items():
        assert billed_seconds(billsec, first, step) == expected, billsec
    assert billed_seconds(0, first, step) == 0


@settings(max_examples=200, deadline=None)
@given(billsec=st.integers(1, 10_000), first=st.integers(1, 120), step=st.integers(1, 120))
def test_billed_covers_the_call_by_whole_steps(billsec, first, step):
    billed = billed_seconds(billsec, first, step)
    assert billed >= billsec and billed >= first
    assert (billed - first) % step == 0
    # Not a step more than needed.
    assert billed == first or billed - step < billsec


def test_charge_rounds_half_up_to_kopecks_with_connection_fee():
    assert charge_for(60, Decimal("1.50"), Decimal("0.00")) == Decimal("1.50")
    assert charge_for(61, Decimal("1.00"), Decimal("0.00")) == Decimal("1.02")  # 1.0166..
    assert charge_for(3, Decimal("0.10"), Decimal("0.00")) == Decimal("0.01")  # 0.005 -> 0.01
    assert charge_for(36, Decimal("12.00"), Decimal("1.00")) == Decimal("8.20")
    assert charge_for(0, Decimal("12.00"), Decimal("1.00")) == Decimal("0.00")


RULES = NumberRules(country_code="7", national_prefix="8", national_length=10,
                    international_prefix="810", local_area="495", local_length=7)


@pytest.mark.parametrize("raw,expected", [
    ("+7 (495) 123-45-67", "74951234567"),
    ("84951234567", "74951234567"),
    ("74951234567", "74951234567"),
    ("4951234567", "74951234567"),
    ("123-45-67", "74951234567"),
    ("810442071234567", "442071234567"),
    ("00442071234567", "442071234567"),
    ("sip:84951234567@pbx.example;user=phone", "74951234567"),
    ("112", "112"),
    ("", ""),
])
def test_normalise(raw, expected):
    assert normalise(raw, RULES) == expected


PLAN = PlanRules(1, "Home", free_seconds=120, free_zones=frozenset({"Moscow"}),
                 offpeak_from_hour=22, offpeak_to_hour=8, weekend_offpeak=True,
                 onnet_free=True, rates_version=2)
TABLE = RateTable([Rate("7", "Russia", Decimal("3.00")),
                   Rate("7495", "Moscow", Decimal("1.50"), Decimal("0.50")),
                   Rate("44", "UK", Decimal("12.00"), None, 30, 6, Decimal("1.00"))])
MONDAY_NOON = dt.datetime(2026, 12, 7, 12)


def rate(called, billsec=61, caller=(1, 10, 1), callee=None, answered=True,
         local=MONDAY_NOON, free_left=None):
    return rate_call(caller=caller, callee=callee, called=called, billsec=billsec,
                     answered=answered, local_start=local, plan=PLAN, table=TABLE,
                     free_left=free_left)


def test_free_rules():
    assert rate("74952223344", answered=False).reason == "unanswered"
    assert rate("74952223344", caller=None, callee=(2, 20, 1)).reason == "incoming"
    assert rate("74952223344", caller=None).reason == "unknown_number"
    assert rate("74952223344", callee=(1, 11, 1)).reason == "own"
    onnet = rate("74952223344", callee=(2, 20, 1))
    assert (onnet.reason, onnet.direction, onnet.charge) == ("onnet", "onnet", Decimal("0.00"))
    assert rate("99912345").reason == "no_rate"


def test_prices_by_zone_time_and_package():
    assert rate("74952223344").charge == Decimal("3.00")            # 120 s x 1.50
    assert rate("73832223344").charge == Decimal("6.00")            # Russia
    assert rate("442071234567").charge == Decimal("14.20")          # 66 s x 12 + 1.00
    night = rate("74952223344", local=dt.datetime(2026, 12, 7, 23))
    assert night.charge == Decimal("1.00")
    saturday = rate("74952223344", local=dt.datetime(2026, 12, 12, 12))
    assert saturday.charge == Decimal("1.00")
    package = rate("74952223344", free_left=90)
    assert (package.free_seconds, package.charge, package.reason) == (90, Decimal("0.75"),
                                                                      "package")
    # The package covers only its zones.
    assert rate("73832223344", free_left=90).free_seconds == 0


def test_asterisk_and_freeswitch_lines():
    asterisk = ('"100","84951110000","84952223344","ctx","","SIP/1","SIP/2","Dial","x",'
                '"2026-12-05 10:00:00","2026-12-05 10:00:05","2026-12-05 10:02:06",126,121,'
                '"ANSWERED","DOCUMENTATION","1733.1",""\n'
                '"","84951110000","84952223344","ctx","","SIP/3","","Dial","x",'
                '"2026-12-05 10:00:00","","2026-12-05 10:00:20",20,0,"BUSY","DOCUMENTATION"\n')
    first, second = list(cdr.parse_cdrs(io.StringIO(asterisk), "asterisk",
                                        timezone="Europe/Moscow"))
    assert (first.external_id, first.login, first.billsec, first.disposition) == \
        ("1733.1", "100", 121, "answered")
    assert first.start == dt.datetime(2026, 12, 5, 7)  # Moscow is UTC+3
    assert second.disposition == "busy" and second.external_id  # made of channel and start
    freeswitch = ('"Ivan","74951110000","74952223344","default","2026-12-05 10:00:00",'
                  '"2026-12-05 10:00:03","2026-12-05 10:01:03","63","60","NORMAL_CLEARING",'
                  '"a1b2-c3","","100","PCMA","PCMA"\n')
    (call,) = cdr.parse_cdrs(io.StringIO(freeswitch), "freeswitch", timezone="UTC")
    assert (call.external_id, call.billsec, call.disposition) == ("a1b2-c3", 60, "answered")


def test_a_bad_line_is_named():
    text = ('"","1","2","c","","S","","D","x","2026-12-05 10:00:00","","2026-12-05 10:00:01",'
            '1,0,"NO ANSWER","DOCUMENTATION","u1",""\n'
            '"","1","2","c","","S","","D","x","yesterday","","",1,0,"NO ANSWER","D","u2",""\n')
    with pytest.raises(DomainError, match="line 2"):
        list(cdr.parse_cdrs(io.StringIO(text), "asterisk", timezone="UTC"))


def test_rate_file():
    rates = cdr.parse_rates(io.StringIO(
        "prefix;zone;price;increments;connection_fee;offpeak_price\n"
        "# comment\n7;Russia;3.00\n+44;UK;12,00;30/6;1.00;\n7495;Moscow;1.50;1/1;;0.50\n"))
    assert [(r.prefix, r.first_increment_s, r.next_increment_s) for r in rates] == \
        [("7", 60, 60), ("44", 30, 6), ("7495", 1, 1)]
    assert rates[2].offpeak_price_per_minute == Decimal("0.50")
    for bad, message in (("7;Russia;abc\n", "line 1"), ("7;R;1\n7;R;2\n", "twice"),
                         ("x7;R;1\n", "prefix"), ("7;R;1;60\n", "increments")):
        with pytest.raises(DomainError, match=message):
            cdr.parse_rates(io.StringIO(bad))
