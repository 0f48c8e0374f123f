"""The catalogue's parsers and checks as pure functions: the refusals the
executable tests leave out, without a process per case."""

from __future__ import annotations

from decimal import Decimal

import pytest

from rating import catalogue, policies
from rating.validate import DomainError


@pytest.mark.parametrize("text, hours", [("00:00-07:00 price=0", (0, 7)),
                                         ("23:00-07:00 price=0", (23, 7)),
                                         ("00:00-24:00 price=0", (0, 24))])
def test_windows(text, hours):
    assert catalogue.parse_window(text) == hours


@pytest.mark.parametrize("text, words", [
    ("00:00-07:00 price=1", "free windows only"), ("00:00-07:00", "needs its price"),
    ("07:00-07:00 price=0", "empty"), ("7-9 price=0", "must look like"),
    ("00:00-07:00 speed=2048", "own speed"), ("00:00-24:30 price=0", "not a time of day"),
    ("00:00-07:00 price=1e3", "amount like")])
def test_bad_windows(text, words):
    with pytest.raises(DomainError, match=words):
        catalogue.parse_window(text)


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
