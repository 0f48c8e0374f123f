"""`abonent banner add|list|remove` through the installed executable, on
SQLite and PostgreSQL: banners with a period and an audience, JSON output,
and bad input refused in one line with exit 2 and nothing changed."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import func, select

from rating import accounts as acc
from rating.models import Banner, OperationLog
from tests.conftest import make_context


@pytest.fixture
def run(abonent_exe, db_url):
    context = make_context(db_url)
    with context.Session() as session:
        acc.create_tariff(session, name="Home", fee="600", rate_down_kbps=100000,
                          rate_up_kbps=50000)
        session.commit()
    abonent_exe.ctx = context
    yield abonent_exe
    context.dispose()


def _count(ctx) -> int:
    with ctx.Session() as session:
        return session.scalar(select(func.count()).select_from(Banner))


def test_add_list_remove(run):
    env = {"ABONENT_TIMEZONE": "Europe/Moscow"}
    added = json.loads(run("banner", "add", "Night works", "--text", "01:00-03:00, no access",
                           "--from", "2026-12-01", "--until", "2026-12-31", "--json",
                           env=env).stdout)
    assert added["audience"] == "all" and added["text"] == "01:00-03:00, no access"
    # Local days in Moscow (UTC+3): the last day is shown whole.
    assert (added["starts"], added["ends"]) == ("2026-12-01 00:00", "2027-01-01 00:00")
    with run.ctx.Session() as session:
        row = session.get(Banner, added["id"])
        assert row.starts_at == dt.datetime(2026, 11, 30, 21, 0)
        assert row.ends_at == dt.datetime(2026, 12, 31, 21, 0)
    home = json.loads(run("banner", "add", "New TV channels", "--audience", "tariff:Home",
                          "--json").stdout)
    debtors = run("banner", "add", "Pay before the 5th", "--audience", "debtors")
    assert debtors.stdout.startswith("banner ") and "debtors" in debtors.stdout
    assert home["audience"] == "tariff:Home" and home["ends"] is None

    listed = json.loads(run("banner", "list", "--all", "--json").stdout)
    assert [b["title"] for b in listed] == ["Night works", "New TV channels",
                                            "Pay before the 5th"]
    table = run("banner", "list", "--all").stdout
    assert "tariff:Home" in table and "Night works" in table

    removed = json.loads(run("banner", "remove", str(home["id"]), "--json").stdout)
    assert removed == {"id": home["id"], "removed": True}
    assert [b["id"] for b in json.loads(run("banner", "list", "--all", "--json").stdout)] == \
        [added["id"], added["id"] + 2]
    with run.ctx.Session() as session:
        actions = session.scalars(select(OperationLog.action)
                                  .where(OperationLog.action.like("banner.%"))).all()
        assert sorted(actions) == ["banner.add"] * 3 + ["banner.remove"]


def test_an_ended_banner_is_listed_only_with_all(run):
    run("banner", "add", "Old news", "--from", "2020-01-01", "--until", "2020-01-31")
    assert json.loads(run("banner", "list", "--json").stdout) == []
    assert len(json.loads(run("banner", "list", "--all", "--json").stdout)) == 1


BAD = [
    (["add", "X", "--audience", "tariff:Nope"], "tariff 'Nope' does not exist"),
    (["add", "X", "--audience", "everyone"], "audience must be all, debtors or tariff:NAME"),
    (["add", "X", "--from", "2026-13-01"], "--from must be a day like"),
    (["add", "X", "--from", "2026-12-10", "--until", "2026-12-01"], "must end after it starts"),
    (["add", "  "], "title must not be empty"),
    (["add", "X" * 121], "title must be at most 120 characters"),
    (["remove", "999"], "banner 999 does not exist"),
    (["remove", "abc"], "'abc' is not a valid integer"),
]


def test_bad_input_is_one_line_and_changes_nothing(run):
    # One process per refusal (exit 2, one line: the abonent_exe fixture checks).
    run("banner", "add", "Kept")
    for args, message in BAD:
        result = run("banner", *args, code=2)
        assert message in result.stderr, (args, result.stderr)
    assert _count(run.ctx) == 1
