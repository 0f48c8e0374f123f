"""The `abonent` admin commands, driven as an admin would, on both databases."""

import json

import pytest
from click.testing import CliRunner

from scripts.cli import cli


def js(result):
    return json.loads(result.stdout)


def test_help_needs_no_database():
    result = CliRunner().invoke(cli, ["--help"], env={"ABONENT_DATABASE_URL": "sqlite:////nonexistent/x/y.db"})
    assert result.exit_code == 0
    for name in ("account", "payment", "nas", "session", "ledger", "serve", "demo"):
        assert name in result.output


def test_account_lifecycle_in_json(abonent):
    abonent("tariff", "add", "Home 100", "--fee", "600", "--down", "100000", "--up", "50000")
    tariffs = js(abonent("tariff", "list", "--json"))
    assert tariffs[0]["name"] == "Home 100" and tariffs[0]["fee"] == "600.00"
    abonent("account", "add", "100001", "--name", "Ivan Petrov", "--tariff", "Home 100",
            "--cabinet-login", "ivan", "--cabinet-password", "s3cret-pass")
    abonent("service", "add", "100001", "--login", "ivan", "--password", "pw1", "--ip", "10.0.0.5")
    first = js(abonent("payment", "add", "100001", "250.50", "--external-id", "bank-1", "--json"))
    again = js(abonent("payment", "add", "100001", "250.50", "--external-id", "bank-1", "--json"))
    assert first["created"] is True and again["created"] is False
    shown = js(abonent("account", "show", "100001", "--json"))
    assert shown["balance"] == "250.50"
    assert shown["tariff"] == "Home 100"
    assert shown["services"][0]["static_ipv4"] == "10.0.0.5"
    ledger = js(abonent("ledger", "100001", "--json"))
    assert [e["amount"] for e in ledger["entries"]] == ["250.50"]
    assert js(abonent("account", "list", "--json"))[0]["number"] == "100001"
    assert js(abonent("account", "list", "--negative", "--json")) == []


@pytest.mark.parametrize("args, message", [
    (["payment", "add", "nope", "10"], "account nope does not exist"),
    (["account", "add", "1", "--name", "X", "--tariff", "Missing"], "tariff 'Missing' does not exist"),
    (["nas", "add", "n1", "--address", "10.0.0.300", "--secret", "s"], "not an IP address"),
    (["nas", "add", "n1", "--address", "10.0.0.1/24", "--secret", "s"], "host bits"),
    (["tariff", "add", "T", "--fee", "1.005", "--down", "1", "--up", "1"], "fee must be an amount"),
])
def test_bad_input_exits_2_with_a_sentence_and_changes_nothing(abonent, args, message):
    result = abonent(*args, code=2)
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert js(abonent("account", "list", "--json")) == []
    assert js(abonent("nas", "list", "--json")) == []
    assert js(abonent("tariff", "list", "--json")) == []


def test_bad_payment_amount_changes_nothing(abonent):
    abonent("account", "add", "7", "--name", "A")
    for amount in ("-5", "0", "abc", "1e3000"):
        assert "amount" in abonent("payment", "add", "7", "--", amount, code=2).stderr
    assert js(abonent("account", "show", "7", "--json"))["balance"] == "0.00"


def test_nas_registry(abonent):
    abonent("nas", "add", "bras1", "--address", "10.1.0.0/16", "--secret", "s3cr3t",
            "--vendor", "mikrotik")
    listed = js(abonent("nas", "list", "--json"))
    assert listed == [dict(listed[0], name="bras1", address="10.1.0.0/16", vendor="mikrotik",
                           coa_port=3799)]
    assert "secret" not in listed[0]
    assert "already exists" in abonent("nas", "add", "bras1", "--address", "10.2.0.1",
                                       "--secret", "x", code=2).stderr


def test_bad_config_key_is_named(tmp_path):
    config = tmp_path / "abonent.toml"
    config.write_text('[radius]\nauth_prot = 1812\n')
    result = CliRunner().invoke(cli, ["--config", str(config), "account", "list"])
    assert result.exit_code == 2
    assert "radius.auth_prot" in result.stderr


def test_fees_run_by_hand_is_idempotent(abonent):
    abonent("tariff", "add", "Daily", "--fee", "310", "--period", "daily", "--down", "1000",
            "--up", "1000")
    abonent("account", "add", "9", "--name", "B", "--tariff", "Daily")
    first = js(abonent("fees", "run", "--day", "2026-01-05", "--json"))
    again = js(abonent("fees", "run", "--day", "2026-01-05", "--json"))
    assert first[0]["charged"] == 1 and again[0]["charged"] == 0
    assert js(abonent("account", "show", "9", "--json"))["balance"] == "-10.00"
    assert "future" in abonent("fees", "run", "--day", "2999-01-01", code=2).stderr
    assert abonent("fees", "run", "--day", "yesterday", code=2).exit_code == 2


def test_ipoe_service_and_pool(abonent):
    abonent("account", "add", "20", "--name", "C")
    abonent("pool", "add", "cgnat", "100.64.0.0/30, 10.1.0.10-10.1.0.12")
    assert js(abonent("pool", "list", "--json"))[0]["name"] == "cgnat"
    made = js(abonent("service", "add", "20", "--kind", "ipoe", "--mac", "AA-BB-CC-00-11-22",
                      "--pool", "cgnat", "--json"))
    assert (made["kind"], made["mac"], made["pool"]) == ("ipoe", "aa:bb:cc:00:11:22", "cgnat")
    for args, message in [
            (["--kind", "ipoe"], "needs --mac or --circuit-id"),
            (["--login", "x"], "needs --login and --password"),
            (["--kind", "ipoe", "--mac", "aa:bb:cc:00:11:22"], "already used"),
            (["--kind", "ipoe", "--mac", "zz"], "not a MAC address"),
            (["--kind", "ipoe", "--circuit-id", "c1", "--pool", "nope"], "pool 'nope'"),
            (["--login", "y", "--password", "p", "--ip", "10.0.0.1", "--pool", "cgnat"],
             "not both")]:
        assert message in abonent("service", "add", "20", *args, code=2).stderr
    assert "not" in abonent("pool", "add", "bad", "300.1.1.0/24", code=2).stderr
    assert len(js(abonent("account", "show", "20", "--json"))["services"]) == 1


def test_delegated_ipv6_prefix(abonent):
    abonent("account", "add", "21", "--name", "D")
    made = js(abonent("service", "add", "21", "--login", "v6", "--password", "p",
                      "--ipv6-prefix", "2001:DB8:1200::/56", "--json"))
    assert made["ipv6_prefix"] == "2001:db8:1200::/56"
    for prefix, message in [("2001:db8::/72", "/64 or wider"),
                            ("2001:db8:1200::1/56", "e.g. 2001:db8:1200::/56"),
                            ("10.0.0.0/8", "not an IPv6 prefix"),
                            ("2001:db8:1200::/56", "already used")]:
        assert message in abonent("service", "add", "21", "--login", f"x{len(prefix)}",
                                  "--password", "p", "--ipv6-prefix", prefix, code=2).stderr
    assert len(js(abonent("account", "show", "21", "--json"))["services"]) == 1
