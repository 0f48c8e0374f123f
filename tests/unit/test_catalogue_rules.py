"""The catalogue's parsers and checks as pure functions: the refusals the
executable tests leave out, without a process per case."""

from __future__ import annotations

from decimal import Decimal

import pytest

from rating import catalogue, policies, timewindows
from rating.validate import DomainError


@pytest.mark.parametrize("text, window", [
    ("00:00-07:00 price=0", (0, 7, Decimal("0.00"), None, None)),
    ("23:00-07:00 price=0.5", (23, 7, Decimal("0.50"), None, None)),
    ("00:00-24:00 speed=2048", (0, 24, None, 2048, 2048)),
    ("01:00-06:00 price=0 speed=200000/100000", (1, 6, Decimal("0.00"), 200000, 100000))])
def test_windows(text, window):
    parsed = catalogue.parse_window(text)
    assert (parsed.start, parsed.end, parsed.price, parsed.down_kbps, parsed.up_kbps) == window
    # What is shown is what can be typed back.
    assert catalogue.parse_window(parsed.text()) == parsed


@pytest.mark.parametrize("text, words", [
    ("00:00-07:00", "needs a price or a speed"),
    ("07:00-07:00 price=0", "empty"), ("7-9 price=0", "must look like"),
    ("00:00-07:00 speed=0", "1 to"), ("00:00-07:00 speed=2048/", "DOWN/UP"),
    ("00:00-07:00 speed=2000000000", "1 to"), ("00:00-24:30 price=0", "not a time of day"),
    ("00:00-07:00 price=1e3", "amount like"), ("00:00-07:00 turbo", "unknown")])
def test_bad_windows(text, words):
    with pytest.raises(DomainError, match=words):
        catalogue.parse_window(text)


def test_windows_of_a_tariff_may_not_overlap_and_older_free_hours_are_read():
    base = dict(fee="1", rate_down_kbps=1, rate_up_kbps=1, price_per_gb="1")
    night, early = (catalogue.parse_window(t) for t in ("23:00-03:00 price=0",
                                                        "02:00-05:00 speed=10"))
    with pytest.raises(DomainError, match="overlap at 02:00"):
        catalogue.check_tariff({**base, "windows": (early, night)})
    fine = catalogue.check_tariff({**base, "windows": (catalogue.parse_window(
        "03:00-05:00 speed=10"), night)})["windows"]
    assert [w.start for w in fine] == [3, 23]
    assert timewindows.from_rules({"free_hours": [1, 7]}) == (
        timewindows.TimeWindow(1, 7, Decimal("0.00")),)


def test_check_tariff_refusals():
    base = dict(fee="1", rate_down_kbps=1, rate_up_kbps=1)
    assert catalogue.check_tariff(base)["directions"] == ("in",)
    for extra, words in [(dict(fee="-5"), "cannot be negative"),
                         (dict(rate_down_kbps=2_000_000_000), "between"),
                         (dict(usage_source="snmp"), "usage source"),
                         (dict(directions=("sideways",)), "directions"),
                         (dict(class_prices={"bad name": "1"}), "traffic class"),
                         (dict(class_prices={"local": "1"}), "unknown")]:
        with pytest.raises(DomainError, match=words):
            catalogue.check_tariff({**base, **extra}, known_classes={"internet"})


def test_ladder_checks():
    rung = policies.parse_rung
    assert policies.check_ladder(policies.DEFAULT_LADDER)
    for rungs, words in [
            (["a below=0 mode=block", "b below=0 past-credit mode=block"], "must come before"),
            (["a below=1 mode=block", "a below=2 mode=block"], "appears twice"),
            (["a below=1 mode=block rate=5"], "has no rate"),
            ([], "1 to 10 rungs")]:
        with pytest.raises(DomainError, match=words):
            policies.check_ladder([rung(r) for r in rungs])
    with pytest.raises(DomainError, match="needs its threshold"):
        rung("a mode=block")
    assert rung("x below=-100 mode=redirect rate=512").offset == Decimal("-100.00")
