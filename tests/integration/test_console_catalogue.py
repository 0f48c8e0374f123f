"""The catalogue as data, through the `abonent` executable on SQLite and
PostgreSQL: tariffs with every rule, option types, the balance ladder.

What the CLI writes must be exactly what rating reads: a tariff added with
a free night window is rated through rating.traffic; a ladder set with
`policy set` decides profiles in rating.fees and rating.policies. Bad input
is one sentence, exit 2, and the database is read back unchanged.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

from sqlalchemy import select, text

from collector.models import TrafficRollup
from rating import accounts as acc
from rating.models import Account, LedgerEntry, OperationLog, Tariff
from tests.conftest import make_context

TABLES = ("tariffs", "accounts", "option_types", "policy_rungs", "operation_log",
          "ledger_entries")


def js(result):
    return json.loads(result.stdout)


def snapshot(url):
    context = make_context(url)
    with context.engine.connect() as conn:
        rows = {t: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {t} ORDER BY 1"))]
                for t in TABLES}
    context.dispose()
    return rows


def refused(run, url, cases):
    """Each case exits 2 with one sentence containing its words; nothing changes."""
    before = snapshot(url)
    for args, words in cases:
        result = run(*args, code=2)
        assert words in result.stderr, (args, result.stderr)
    assert snapshot(url) == before


NIGHT = ["tariff", "add", "Night 100", "--fee", "600", "--down", "100000", "--up", "50000",
         "--negative", "512", "--prepaid-mb", "0", "--price-per-gb", "2",
         "--class-price", "internet=1.50", "--window", "00:00-07:00 price=0",
         "--switch-min-days", "30", "--usage-source", "netflow", "--json"]


def test_tariff_add_show_edit_archive(abonent_exe, db_url):
    added = js(abonent_exe(*NIGHT))
    assert added["fee"] == "600.00" and added["windows"] == ["00:00-07:00 price=0.00"]
    assert added["class_prices"] == {"internet": "1.50"}

    shown = js(abonent_exe("tariff", "show", "Night 100", "--json"))
    assert {k: shown[k] for k in ("fee_period", "rate_down_kbps", "negative_rate_kbps",
                                  "usage_source", "switch_min_days", "directions",
                                  "fee_while_suspended", "archived", "subscribers")} == dict(
        fee_period="monthly", rate_down_kbps=100000, negative_rate_kbps=512,
        usage_source="netflow", switch_min_days=30, directions=["in"],
        fee_while_suspended=False, archived=False, subscribers=0)

    # The stored row is what rating reads: the rules JSON of rating.traffic.
    context = make_context(db_url)
    with context.Session() as session:
        row = session.scalar(select(Tariff).where(Tariff.name == "Night 100"))
        assert row.rules["windows"] == [{"start": 0, "end": 7, "price": "0.00"}]
        assert row.rules["class_prices"] == {"internet": "1.50"}
        acc.create_account(session, number="100", name="Ivan", tariff="Night 100")
        session.commit()

    edited = js(abonent_exe("tariff", "edit", "Night 100", "--fee", "650.5", "--no-window",
                            "--direction", "out", "--direction", "in", "--json"))
    assert edited["changed"] == {"fee": {"old": "600.00", "new": "650.50"},
                                 "windows": {"old": "00:00-07:00 price=0.00", "new": "none"},
                                 "directions": {"old": "in", "new": "in+out"}}
    # Only what was given changed.
    assert edited["rate_up_kbps"] == 50000 and edited["class_prices"] == {"internet": "1.50"}

    archived = js(abonent_exe("tariff", "archive", "Night 100", "--json"))
    assert archived["archived"] is True and archived["subscribers"] == 1
    listed = js(abonent_exe("tariff", "list", "--offered", "--json"))
    assert listed == []

    with context.Session() as session:
        # The subscriber keeps it; a new account cannot choose it.
        assert session.scalar(select(Account).where(Account.number == "100")).tariff.name == \
            "Night 100"
        try:
            acc.create_account(session, number="101", name="Olga", tariff="Night 100")
        except acc.DomainError as error:
            assert "archived" in str(error)
        else:
            raise AssertionError("an archived tariff was chosen for a new account")
        log = session.scalars(select(OperationLog).where(OperationLog.action.like("tariff.%"))
                              .order_by(OperationLog.id)).all()
        assert [entry.action for entry in log] == ["tariff.add", "tariff.edit", "tariff.archive"]
        assert {entry.actor for entry in log} == {"admin:test"}
        assert log[1].details["fee"] == "600.00 -> 650.50"
    context.dispose()

    refused(abonent_exe, db_url, [
        (["account", "add", "102", "--name", "Petr", "--tariff", "Night 100"], "archived"),
    ])


def test_tariff_night_window_is_rated_free(abonent_exe, db_url, tmp_path):
    """A tariff written by the CLI with a free night window: night traffic
    costs 0 through rating.traffic, day traffic its class price."""
    classes = tmp_path / "classes.toml"
    classes.write_text('[classes]\nlocal = ["10.0.0.0/8"]\n')
    env = {"ABONENT_COLLECTOR_CLASSES": str(classes)}
    abonent_exe("tariff", "add", "Night", "--fee", "0", "--down", "1000", "--up", "1000",
                "--price-per-gb", "2", "--class-price", "local=0", "--class-price",
                "internet=1.50", "--window", "23:00-07:00 price=0", "--usage-source",
                "netflow", env=env)
    from rating import traffic
    context = make_context(db_url)
    with context.Session() as session:
        account = acc.create_account(session, number="100", name="Ivan", tariff="Night")
        night, day = dt.datetime(2026, 11, 3, 2), dt.datetime(2026, 11, 3, 12)
        session.add_all([
            TrafficRollup(account_id=account.id, interval_start=hour, traffic_class=cls,
                          direction="in", bytes=4 * traffic.GB, packets=1, source="netflow")
            for hour in (night, day) for cls in ("internet", "local")])
        session.commit()
        assert traffic.charge_hour(session, night, "UTC") == 0
        assert traffic.charge_hour(session, day, "UTC") == 1
        session.commit()
        amounts = session.scalars(select(LedgerEntry.amount)).all()
        assert amounts == [Decimal("-6.00")]  # 4 GB internet at 1.50; local free
    context.dispose()


def test_tariff_bad_input_changes_nothing(abonent_exe, db_url, tmp_path):
    abonent_exe("tariff", "add", "Home", "--fee", "600", "--down", "100", "--up", "100")
    base = ["tariff", "add", "New", "--down", "1", "--up", "1"]
    refused(abonent_exe, db_url, [
        (["tariff", "add", "", "--fee", "1", "--down", "1", "--up", "1"], "must not be empty"),
        (["tariff", "add", "Bad\x07", "--fee", "1", "--down", "1", "--up", "1"],
         "control characters"),
        (["tariff", "add", "Home", "--fee", "1", "--down", "1", "--up", "1"], "already exists"),
        (base + ["--fee", "1e21"], "fee must be an amount"),
        (base + ["--fee", "1", "--window", "25:00-07:00 price=0"], "not a time of day"),
        (base + ["--fee", "1", "--window", "00:30-07:00 price=0"], "on the hour"),
        (base + ["--fee", "1", "--window", "00:00-07:00"], "needs a price or a speed"),
        (base + ["--fee", "1", "--window", "00:00-07:00 speed=0"], "1 to"),
        (base + ["--fee", "1", "--window", "00:00-07:00 speed=fast"], "DOWN/UP"),
        (base + ["--fee", "1", "--window", "00:00-07:00 colour=red"], "unknown"),
        (base + ["--fee", "1", "--window", "00:00-07:00 price=-1"], "window price"),
        (base + ["--fee", "1", "--window", "22:00-02:00 price=0", "--window",
                 "01:00-07:00 speed=1000"], "overlap at 01:00"),
        (base + ["--fee", "1", "--window", "19:00-23:00 price=0.50"], "bills none"),
        (base + ["--fee", "1", "--class-price", "local=0"], "class 'local' is unknown"),
        (["tariff", "edit", "Missing", "--fee", "1"], "does not exist"),
        (["tariff", "edit", "Home"], "nothing to change"),
    ])


# -- option types --------------------------------------------------------------

def test_option_type_add_edit_list_and_monthly_limit(abonent_exe, db_url):
    added = js(abonent_exe("option-type", "add", "turbo", "--name", "Turbo x2", "--kind",
                           "turbo", "--price", "50", "--multiplier", "2", "--max-per-month",
                           "1", "--json"))
    assert added["price"] == "50.00" and added["max_per_month"] == 1
    edited = js(abonent_exe("option-type", "edit", "turbo", "--price", "60.50", "--hours", "12",
                            "--json"))
    assert edited["changed"] == {"price": {"old": "50.00", "new": "60.50"},
                                 "duration_hours": {"old": "24", "new": "12"}}
    assert edited["rate_multiplier"] == 2  # only what was given changed
    listed = js(abonent_exe("option-type", "list", "--json"))
    assert [o["code"] for o in listed] == ["turbo"]

    # What the CLI wrote is what options.buy sells: price, hours, the limit.
    from rating import options
    context = make_context(db_url)
    with context.Session() as session:
        acc.create_tariff(session, name="Home", fee="0", rate_down_kbps=1000,
                          rate_up_kbps=1000)
        account = acc.create_account(session, number="100", name="Ivan", tariff="Home")
        acc.add_payment(session, account, "500", external_id="p1")
        now = dt.datetime(2026, 11, 3, 12)
        bought = options.buy(session, account, "turbo", now, request_id="r1")
        assert bought.ends_at == now + dt.timedelta(hours=12)
        session.commit()
        assert account.balance == Decimal("439.50")
        later = now + dt.timedelta(days=2)  # the turbo has ended; the month's one is used
        try:
            options.buy(session, account, "turbo", later, request_id="r2")
        except acc.DomainError as error:
            assert "1 time a month" in str(error)
        else:
            raise AssertionError("the monthly limit did not hold")
        session.rollback()
        assert options.buy(session, account, "turbo", dt.datetime(2026, 12, 1, 1),
                           request_id="r3").created
        actions = session.scalars(select(OperationLog.action).where(
            OperationLog.action.like("option_type.%")).order_by(OperationLog.id)).all()
        assert actions == ["option_type.add", "option_type.edit"]
    context.dispose()


def test_option_type_bad_input_changes_nothing(abonent_exe, db_url):
    abonent_exe("option-type", "add", "turbo", "--name", "Turbo", "--kind", "turbo",
                "--price", "50", "--multiplier", "2")
    add = ["option-type", "add", "gb10", "--kind", "traffic", "--traffic-mb", "10000"]
    refused(abonent_exe, db_url, [
        (add + ["--name", "", "--price", "1"], "must not be empty"),
        (add + ["--name", "Ten", "--price", "1e21"], "amount like"),
        (add + ["--name", "Ten", "--price", "1", "--hours", "100000"], "between"),
        (["option-type", "add", "turbo", "--name", "T", "--kind", "turbo", "--price", "1"],
         "already exists"),
        (["option-type", "edit", "missing", "--price", "1"], "does not exist"),
    ])


# -- the balance ladder --------------------------------------------------------

def test_policy_set_changes_the_decided_profile(abonent_exe, db_url):
    from rating import fees, policies
    context = make_context(db_url)
    with context.Session() as session:
        acc.create_tariff(session, name="Home", fee="0", rate_down_kbps=100000,
                          rate_up_kbps=100000, negative_rate_kbps=512)
        account = acc.create_account(session, number="100", name="Ivan", tariff="Home")
        acc.add_payment(session, account, "30", external_id="p1")
        session.commit()
    context.dispose()
    shown = js(abonent_exe("policy", "show", "--json"))
    assert shown["source"] == "settings" and len(shown["rungs"]) == 2

    # Balance 30: normal under the settings' ladder; below 50 is throttled now.
    result = js(abonent_exe("policy", "set", "--rung", "suspended below=0 past-credit mode=block",
                            "--rung", "throttled below=50 mode=throttle rate=1024", "--json"))
    assert result["source"] == "database" and result["profiles_changed"] == 1
    context = make_context(db_url)
    with context.Session() as session:
        account = session.scalar(select(Account).where(Account.number == "100"))
        assert account.profile == "throttled"
        ladder = policies.ladder_in_force(session)
        assert [r.profile for r in ladder] == ["suspended", "throttled"]
        assert policies.decide(Decimal("30"), Decimal("0"), ladder) == "throttled"
        from rating.profile import TariffSpeeds, desired_profile
        wanted = desired_profile(state="active", rung=account.profile,
                                 tariff=TariffSpeeds(100000, 100000, 512),
                                 now=dt.datetime(2026, 11, 3), ladder=ladder)
        assert (wanted.down_kbps, wanted.up_kbps) == (1024, 1024)
        log = session.scalars(select(OperationLog).where(OperationLog.action == "policy.set")
                              ).one()
        assert log.actor == "admin:test" and log.details["old"] == "settings"
    context.dispose()

    shown = js(abonent_exe("policy", "show", "--json"))
    assert [r["rung"] for r in shown["rungs"]] == [
        "suspended below=0.00 past-credit mode=block",
        "throttled below=50.00 mode=throttle rate=1024"]

    # Back to the settings' ladder: balance 30 is normal again.
    abonent_exe("policy", "set", "--reset")
    context = make_context(db_url)
    with context.Session() as session:
        assert session.scalar(select(Account.profile).where(Account.number == "100")) == "normal"
        assert policies.ladder_in_force(session) == policies.DEFAULT_LADDER
        assert fees.apply_policies(session) == 0
    context.dispose()


def test_policy_bad_input_changes_nothing(abonent_exe, db_url):
    abonent_exe("policy", "set", "--rung", "suspended below=0 past-credit mode=block")
    refused(abonent_exe, db_url, [
        (["policy", "set", "--rung", "a below=10 mode=block", "--rung", "b below=5 mode=block"],
         "thresholds must rise"),
        (["policy", "set", "--rung", "a below=1 mode=slow"], "must be one of"),
        (["policy", "set", "--rung", "a below=1e3 mode=block"], "amount like"),
        (["policy", "set", "--rung", "normal below=1 mode=block"], "none of"),
        (["policy", "set"], "--rung options, or --reset"),
    ])
