"""Traffic charges from rollups: prepaid volume, class prices, free night hours."""

import datetime as dt
from decimal import Decimal

from sqlalchemy import select

from collector.models import TrafficRollup
from rating import ledger, timewindows, traffic
from rating.models import LedgerEntry
from tests.factories import make_account, make_tariff

GB = 10 ** 9


def add_usage(session, account, at, volume, traffic_class="internet", direction="in",
              source="netflow"):
    session.add(TrafficRollup(account_id=account.id, interval_start=at,
                              traffic_class=traffic_class, direction=direction, bytes=volume,
                              packets=volume // 1000, source=source))


def test_hour_charge_uses_prepaid_on_the_cheapest_class_first():
    rules = traffic.TrafficRules(price_per_gb=Decimal("2.00"), prepaid_bytes=3 * GB,
                                 class_prices={"local": Decimal("0"), "ix": Decimal("1.00")})
    assert traffic.hour_charge(rules, 0, {"internet": 2 * GB, "local": 50 * GB}) == (
        Decimal("0.00"), 2 * GB)
    assert traffic.hour_charge(rules, 2 * GB, {"internet": 2 * GB, "ix": 2 * GB}) == (
        Decimal("5.00"), 4 * GB)  # 1 GB ix prepaid, 1 GB ix at 1.00, 2 GB internet at 2.00
    assert traffic.hour_charge(rules, 10 * GB, {"internet": 1_234_567}) == (
        Decimal("0.00"), 1_234_567)  # 0.0025 rounds half up per hour to 0.00
    rules_night = traffic.TrafficRules(Decimal("1"), 0, windows=timewindows.from_rules(
        {"free_hours": [23, 7]}))
    assert rules_night.free_at(23) and rules_night.free_at(3) and not rules_night.free_at(7)


def test_a_priced_window_costs_its_price_and_leaves_the_prepaid_volume_alone():
    rules = traffic.TrafficRules(price_per_gb=Decimal("2.00"), prepaid_bytes=3 * GB,
                                 class_prices={"local": Decimal("0")},
                                 windows=timewindows.from_rules({"windows": [
                                     {"start": 18, "end": 23, "price": "0.50"},
                                     {"start": 23, "end": 7, "price": "0"},
                                     {"start": 9, "end": 12, "down_kbps": 5, "up_kbps": 5}]}))
    # Evening: 4 GB internet at 0.50 (none of the 3 GB prepaid used), local free.
    assert traffic.hour_charge(rules, 0, {"internet": 4 * GB, "local": 9 * GB},
                               rules.window_price(19)) == (Decimal("2.00"), 4 * GB)
    assert rules.window_price(3) == 0 and rules.free_at(3) and not rules.free_at(19)
    # A window with a speed only prices its hour as any other.
    assert rules.window_price(10) is None and rules.window_price(8) is None
    assert traffic.hour_charge(rules, 0, {"internet": 4 * GB}, rules.window_price(10)) == (
        Decimal("2.00"), 4 * GB)  # 3 GB prepaid, 1 GB at 2.00


def test_evening_half_price_is_charged_by_the_hour_and_keeps_the_prepaid_for_the_day(
        session):
    tariff = make_tariff(session, price_per_gb="2.00", prepaid_mb=5_000)
    tariff.usage_source = "netflow"
    tariff.rules = {"windows": [{"start": 20, "end": 23, "price": "0.50"}]}
    account = make_account(session, tariff=tariff.name, balance="100")
    # Europe/Moscow is UTC+3: 18:00 UTC is 21:00 local (the window).
    evening = dt.datetime(2026, 7, 1, 18, 0)
    day = dt.datetime(2026, 7, 2, 9, 0)
    add_usage(session, account, evening, 6 * GB)
    add_usage(session, account, day, 7 * GB)
    session.commit()
    for hour in (evening, day):
        traffic.charge_hour(session, hour, "Europe/Moscow")
    session.commit()
    entries = session.scalars(select(LedgerEntry).where(LedgerEntry.kind == "traffic")
                              .order_by(LedgerEntry.id)).all()
    # Evening 6 GB x 0.50; the next day the 5 GB prepaid is whole: 2 GB x 2.00.
    assert [e.amount for e in entries] == [Decimal("-3.00"), Decimal("-4.00")]
    assert "0.50 per GB in the time window" in entries[0].memo


def test_traffic_over_prepaid_is_charged_once_per_hour_and_night_is_free(session):
    tariff = make_tariff(session, price_per_gb="1.50", prepaid_mb=5_000)
    tariff.usage_source = "netflow"
    tariff.rules = {"free_hours": [1, 7], "class_prices": {"local": "0"}}
    account = make_account(session, tariff=tariff.name, balance="100")
    # Europe/Moscow is UTC+3: 22:00 UTC is 01:00 local (free), 09:00 UTC is 12:00.
    night = dt.datetime(2026, 7, 1, 22, 0)
    day = dt.datetime(2026, 7, 2, 9, 0)
    add_usage(session, account, night, 40 * GB)
    add_usage(session, account, day, 4 * GB)
    add_usage(session, account, day + dt.timedelta(minutes=5), 4 * GB)
    add_usage(session, account, day + dt.timedelta(minutes=10), 9 * GB, traffic_class="local")
    add_usage(session, account, day + dt.timedelta(minutes=15), 7 * GB, direction="out")
    add_usage(session, account, day + dt.timedelta(hours=1), 2 * GB)
    session.commit()
    for hour in (night, day, day + dt.timedelta(hours=1)):
        traffic.charge_hour(session, hour, "Europe/Moscow")
    again = traffic.charge_due(session, day + dt.timedelta(hours=3), "Europe/Moscow")
    session.commit()
    assert again == 0
    entries = session.scalars(select(LedgerEntry).where(LedgerEntry.kind == "traffic")
                              .order_by(LedgerEntry.id)).all()
    # 09:00: 8 GB internet, 5 GB prepaid -> 3 GB x 1.50; 10:00: 2 GB x 1.50.
    assert [(e.idempotency_key, e.amount) for e in entries] == [
        (f"traffic:{account.id}:2026-07-02T09", Decimal("-4.50")),
        (f"traffic:{account.id}:2026-07-02T10", Decimal("-3.00"))]
    assert "GB" in entries[0].memo
    session.refresh(account)
    assert account.balance == Decimal("92.50")
    assert ledger.balance_mismatches(session) == []


def test_usage_source_is_chosen_per_tariff(session):
    tariff = make_tariff(session, price_per_gb="1.00")
    tariff.usage_source = "radius"
    account = make_account(session, tariff=tariff.name)
    at = dt.datetime(2026, 7, 2, 9, 0)
    add_usage(session, account, at, 5 * GB, source="netflow")
    add_usage(session, account, at, 2 * GB, source="radius")
    session.commit()
    traffic.charge_hour(session, at, "UTC")
    session.commit()
    assert session.scalars(select(LedgerEntry.amount).where(
        LedgerEntry.kind == "traffic")).all() == [Decimal("-2.00")]


def test_the_traffic_job_throttles_when_traffic_eats_the_balance(ctx):
    from rating import jobs
    from rating.models import Account
    with ctx.Session() as session:
        tariff = make_tariff(session, price_per_gb="10.00")
        tariff.usage_source = "netflow"
        account = make_account(session, tariff=tariff.name, balance="5", credit_limit="100")
        add_usage(session, account, dt.datetime(2026, 7, 2, 9, 0), 1 * GB)
        session.commit()
        account_id = account.id
    assert jobs.run_traffic(ctx.engine, ctx.Session, "UTC",
                            now=dt.datetime(2026, 7, 2, 10, 20)) == 1
    with ctx.Session() as session:
        account = session.get(Account, account_id)
        assert (account.balance, account.profile) == (Decimal("-5.00"), "throttled")


def test_a_traffic_pack_adds_to_the_prepaid_volume(session):
    from rating import options
    tariff = make_tariff(session, price_per_gb="2.00", prepaid_mb=1_000)
    tariff.usage_source = "netflow"
    account = make_account(session, tariff=tariff.name, balance="100")
    options.create_option_type(session, code="pack10", name="10 GB", kind="traffic",
                               price="20", duration_hours=24 * 31, traffic_mb=10_000)
    at = dt.datetime(2026, 7, 2, 9, 0)
    options.buy(session, account, "pack10", at - dt.timedelta(hours=2), request_id="p")
    add_usage(session, account, at, 12 * GB)
    session.commit()
    traffic.charge_hour(session, at, "UTC")
    session.commit()
    # 12 GB used, 1 GB prepaid + 10 GB pack: 1 GB at 2.00.
    assert session.scalars(select(LedgerEntry.amount).where(
        LedgerEntry.kind == "traffic")).all() == [Decimal("-2.00")]


def test_traffic_exported_late_is_billed_as_an_adjustment_per_hour_and_revision(session):
    """A router's buffered NetFlow arrives two days late: the hour it
    belongs to is charged again for the difference only, with its own key
    and memo, and the prepaid volume it used up makes the next hour dearer
    too; a rerun that sees nothing new writes nothing."""
    tariff = make_tariff(session, price_per_gb="2.00", prepaid_mb=1_000)
    tariff.usage_source = "netflow"
    account = make_account(session, tariff=tariff.name, balance="100")
    ten = dt.datetime(2026, 7, 2, 10, 0)
    eleven = ten + dt.timedelta(hours=1)
    add_usage(session, account, ten, 3 * GB)
    add_usage(session, account, eleven, 1 * GB)
    session.commit()
    run_at = eleven + dt.timedelta(hours=1, minutes=30)
    assert traffic.charge_due(session, run_at, "Europe/Moscow") == 2
    # Late: 2 GB more in the 10:00 hour (one export a day and a half late).
    add_usage(session, account, ten + dt.timedelta(minutes=20), 2 * GB)
    session.commit()
    later = run_at + dt.timedelta(hours=36)
    assert traffic.charge_due(session, later, "Europe/Moscow") == 1
    assert traffic.charge_due(session, later, "Europe/Moscow") == 0  # nothing new
    # Still later data for 10:00, outside the 48 h window of the next run:
    # it stays unbilled rather than counted against a wrong hour.
    add_usage(session, account, ten + dt.timedelta(minutes=40), 5 * GB)
    session.commit()
    assert traffic.charge_due(session, later + dt.timedelta(hours=24), "Europe/Moscow") == 0
    session.commit()
    lines = session.execute(select(LedgerEntry.idempotency_key, LedgerEntry.amount,
                                   LedgerEntry.memo)
                            .where(LedgerEntry.kind == "traffic")
                            .order_by(LedgerEntry.id)).all()
    # 10:00: 3 GB - 1 GB prepaid = 2 GB x 2.00; 11:00: 1 GB x 2.00. Then
    # 10:00 had 5 GB (8.00 in all, 4.00 more) and 11:00 is unchanged.
    assert [(key, amount) for key, amount, _ in lines] == [
        (f"traffic:{account.id}:2026-07-02T10", Decimal("-4.00")),
        (f"traffic:{account.id}:2026-07-02T11", Decimal("-2.00")),
        (f"traffic:{account.id}:2026-07-02T10:r1", Decimal("-4.00")),
    ]
    assert lines[2].memo.startswith("late traffic for 2026-07-02 10:00 UTC: now 5.000 GB")
    assert ledger.balance_mismatches(session) == []


def test_late_traffic_that_uses_up_the_prepaid_volume_reprices_the_next_hour(session):
    tariff = make_tariff(session, price_per_gb="1.00", prepaid_mb=4_000)
    tariff.usage_source = "netflow"
    account = make_account(session, tariff=tariff.name, balance="100")
    ten = dt.datetime(2026, 7, 2, 10, 0)
    add_usage(session, account, ten, 1 * GB)
    add_usage(session, account, ten + dt.timedelta(hours=1), 4 * GB)
    session.commit()
    run_at = ten + dt.timedelta(hours=2, minutes=30)
    traffic.charge_due(session, run_at, "Europe/Moscow")   # 11:00: 1 GB over prepaid
    add_usage(session, account, ten + dt.timedelta(minutes=30), 3 * GB)  # late, for 10:00
    session.commit()
    traffic.charge_due(session, run_at + dt.timedelta(hours=1), "Europe/Moscow")
    session.commit()
    lines = session.execute(select(LedgerEntry.idempotency_key, LedgerEntry.amount)
                            .where(LedgerEntry.kind == "traffic")
                            .order_by(LedgerEntry.id)).all()
    assert lines == [(f"traffic:{account.id}:2026-07-02T11", Decimal("-1.00")),
                     (f"traffic:{account.id}:2026-07-02T11:r1", Decimal("-3.00"))]
