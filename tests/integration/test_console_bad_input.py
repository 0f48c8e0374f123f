"""Bad input to the `abonent` executable: exit 2, one sentence, nothing changed.

Each case from the operator's-console review (issue 14) runs through the
installed executable on SQLite and PostgreSQL; the database is read back
afterwards to prove nothing was written.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from aaa.models import Nas
from rating import accounts as acc
from tests.conftest import ABONENT_EXE, PG_URL, make_context


def js(result):
    return json.loads(result.stdout)


TABLES = ("accounts", "tariffs", "nas", "ledger_entries", "operation_log", "services",
          "cabinet_users")


@pytest.fixture
def seeded(abonent_exe, db_url):
    """A tariff, an account and a NAS, written as an admin would."""
    context = make_context(db_url)
    with context.Session() as session:
        acc.create_tariff(session, name="Home", fee="600", rate_down_kbps=100000,
                          rate_up_kbps=50000)
        acc.create_account(session, number="100", name="Ivan Petrov", tariff="Home")
        session.add(Nas(name="bras1", address="10.0.0.1", secret="s3cret"))
        session.commit()
    context.dispose()
    abonent_exe.url = db_url
    return abonent_exe


def snapshot(run):
    """Every row of the tables a console command could write, read back."""
    context = make_context(run.url)
    with context.engine.connect() as conn:
        rows = {t: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {t} ORDER BY 1"))]
                for t in TABLES}
    context.dispose()
    return rows


LONG = "x" * 10_000
CASES = [
    (["payment", "add", "100", "1000000000000000"], "must not exceed"),
    (["payment", "add", "100", "1e3"], "amount like 100"),
    (["payment", "add", "100", "-100"], "more than zero"),
    (["payment", "add", "100", "10.005"], "amount like 100"),
    (["payment", "add", "100", "NaN"], "amount like 100"),
    (["payment", "add", "100", "50", "--external-id", ""], "external id"),
    (["payment", "add", "100", "50", "--external-id", "two words"], "external id"),
    (["payment", "add", "100", "50", "--memo", "m" * 100_000], "memo must be at most"),
    (["payment", "add", "100", "50", "--memo", "a\x1bb"], "control characters"),
    (["tariff", "add", "Big", "--fee", "1e21", "--down", "1", "--up", "1"], "fee must be"),
    (["tariff", "add", "Big", "--fee", "1000000000000", "--down", "1", "--up", "1"],
     "must not exceed"),
    (["tariff", "add", "", "--fee", "1", "--down", "1", "--up", "1"], "must not be empty"),
    (["tariff", "add", "Bad\nName", "--fee", "1", "--down", "1", "--up", "1"],
     "control characters"),
    (["account", "add", "101", "--name", LONG], "at most 200 characters"),
    (["account", "add", "101", "--name", "Line\nbreak"], "control characters"),
    (["account", "add", "101", "--name", "Bell\x07"], "control characters"),
    (["account", "add", "101", "--name", "Ivan", "--phone", "not a phone"], "phone number"),
    (["account", "add", "101", "--name", "Ivan", "--email", "nobody"], "e-mail"),
    (["account", "add", "101", "--name", "Ivan", "--credit-limit", "-5"], "cannot be negative"),
    (["nas", "add", "", "--address", "10.0.0.9", "--secret", "s"], "must not be empty"),
    (["nas", "add", "bad\tname", "--address", "10.0.0.9", "--secret", "s"],
     "control characters"),
]


@pytest.mark.parametrize("args, message", CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_bad_input_is_one_sentence_and_changes_nothing(seeded, args, message):
    before = snapshot(seeded)
    result = seeded(*args, code=2)
    assert message in result.stderr
    assert snapshot(seeded) == before


def test_a_command_before_db_upgrade_says_to_run_it(tmp_path, db_url, abonent_exe):
    if db_url.startswith("sqlite"):
        empty = f"sqlite:///{tmp_path / 'empty.sqlite3'}"
        result = abonent_exe("account", "list", code=2, env={"ABONENT_DATABASE_URL": empty})
        assert "run `abonent db upgrade` first" in result.stderr
        abonent_exe("db", "upgrade", env={"ABONENT_DATABASE_URL": empty})
        assert abonent_exe("account", "list", "--json",
                           env={"ABONENT_DATABASE_URL": empty}).stdout.strip() == "[]"
        return
    name = f"abonent_empty_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        empty = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
        result = abonent_exe("payment", "add", "1", "10", code=2,
                             env={"ABONENT_DATABASE_URL": empty})
        assert "run `abonent db upgrade` first" in result.stderr
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_a_database_with_no_server_is_one_sentence(abonent_exe):
    result = abonent_exe("account", "list", code=2, env={
        "ABONENT_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:1/abonent"})
    assert "cannot reach the database" in result.stderr
    assert "127.0.0.1" in result.stderr


@pytest.mark.parametrize("setting, message", [
    ("[radius]\nauth_port = 70000\n", "radius.auth_port must be a port"),
    ("[cabinet]\nport = 0\n", "cabinet.port must be a port"),
    ("[radius]\ninterim_interval = -1\n", "radius.interim_interval must be 0 or more"),
    ("[promised]\nmax_amount = \"1e3\"\n", "promised.max_amount must be an amount"),
    ("timezone = \"Mars/Olympus\"\n", "timezone must be a time zone"),
])
def test_a_bad_config_value_is_named(abonent_exe, tmp_path, setting, message):
    config = tmp_path / "abonent.toml"
    config.write_text(setting)
    result = abonent_exe("--config", config, "account", "list", code=2)
    assert message in result.stderr


def test_an_unknown_abonent_variable_is_refused(abonent_exe):
    result = abonent_exe("account", "list", code=2, env={"ABONENT_RADIUS_AUTH_PROT": "1812"})
    assert "unknown environment variable ABONENT_RADIUS_AUTH_PROT" in result.stderr


def test_usage_errors_are_one_line(abonent_exe):
    assert "No such command" in abonent_exe("acount", "list", code=2).stderr
    assert "Missing argument" in abonent_exe("account", "add", code=2).stderr
    assert "--actor" in abonent_exe("--actor", "two words", "account", "list", code=2).stderr


def test_the_actor_is_the_os_user_or_the_option(seeded):
    seeded("payment", "add", "100", "10", "--external-id", "a1")
    seeded("--actor", "alice", "payment", "add", "100", "10", "--external-id", "a2")
    authors = [e["author"] for e in js(seeded("ledger", "100", "--json"))["entries"]]
    # abonent_exe sets ABONENT_ACTOR=admin:test; --actor wins over it.
    assert authors == ["admin:alice", "admin:test"]


def test_the_os_user_is_the_default_actor(db_url, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ABONENT_")}
    env.update(ABONENT_DATABASE_URL=db_url, ABONENT_DATA_DIR=str(tmp_path), USER="nocadmin",
               LOGNAME="nocadmin")
    for args in (["account", "add", "7", "--name", "A"],
                 ["payment", "add", "7", "5", "--external-id", "x1"]):
        subprocess.run([ABONENT_EXE, *args], env=env, check=True, capture_output=True)
    out = subprocess.run([ABONENT_EXE, "ledger", "7", "--json"], env=env, check=True,
                         capture_output=True, text=True).stdout
    assert json.loads(out)["entries"][0]["author"] == "admin:nocadmin"


def test_a_list_that_is_cut_says_so_on_stderr(seeded):
    for n in range(3):
        seeded("payment", "add", "100", "1", "--external-id", f"p{n}")
    first = seeded("ledger", "100", "--limit", "2", "--json")
    assert len(js(first)["entries"]) == 2
    assert "more with --offset 2" in first.stderr
    rest = seeded("ledger", "100", "--limit", "2", "--offset", "2", "--json")
    assert len(js(rest)["entries"]) == 1 and rest.stderr == ""
    ids = [e["id"] for e in js(first)["entries"] + js(rest)["entries"]]
    assert len(set(ids)) == 3

