"""`abonent customer`, `abonent org`, `abonent grant` (issue 21): a company
built from the console, its tree and rights; bad input is exit 2 with a
sentence and changes nothing. Both databases."""

from __future__ import annotations

import json

from rating import org


def test_a_company_from_the_console(abonent):
    abonent("tariff", "add", "Office", "--fee", "1000", "--down", "100000", "--up", "100000")
    for number in ("C-1", "C-2", "C-3"):
        abonent("account", "add", number, "--name", "Line " + number, "--kind", "company",
                "--tariff", "Office")
    abonent("cabinet-user", "add", "boss", "C-1", "--password", "boss-password-1")
    customer = json.loads(abonent("customer", "add", "OOO Romashka", "--json").output)
    sales = json.loads(abonent("org", "add", str(customer["id"]), "Sales", "--json").output)
    north = json.loads(abonent("org", "add", str(customer["id"]), "North", "--parent",
                               str(sales["id"]), "--json").output)
    attached = json.loads(abonent("customer", "attach", str(customer["id"]), "C-1", "C-2",
                                  "--unit", str(north["id"]), "--json").output)
    assert attached["changed"] == 2
    abonent("customer", "attach", str(customer["id"]), "C-3")
    tree = json.loads(abonent("org", "tree", str(customer["id"]), "--json").output)
    assert [(row["name"], row["depth"], row["accounts"]) for row in tree["units"]] == [
        ("Sales", 0, 0), ("North", 1, 2)]
    assert tree["accounts_without_unit"] == 1
    assert "  North" in abonent("org", "tree", str(customer["id"])).output
    grant = json.loads(abonent("grant", "add", "boss", str(customer["id"]), "--unit",
                               str(sales["id"]), "--rights", "view,pay", "--json").output)
    assert grant["rights"] == "view,pay"
    listed = json.loads(abonent("grant", "list", "--login", "boss", "--json").output)
    assert [row["id"] for row in listed] == [grant["id"]]
    shown = json.loads(abonent("customer", "show", str(customer["id"]), "--json").output)
    assert shown["accounts"] == 3 and shown["units"] == 2 and shown["grants"] == 1
    assert "OOO Romashka" in abonent("customer", "list").output

    # Refusals: a sentence, exit 2, nothing changed.
    cycle = abonent("org", "move", str(sales["id"]), "--parent", str(north["id"]), code=2)
    assert "below itself" in cycle.stderr
    assert "unknown right" in abonent("grant", "add", "boss", str(customer["id"]),
                                      "--rights", "fly", code=2).stderr
    assert "does not exist" in abonent("org", "add", "999", "X", code=2).stderr
    assert "no cabinet login" in abonent("grant", "add", "nobody", str(customer["id"]),
                                         code=2).stderr
    other = json.loads(abonent("customer", "add", "Other", "--json").output)
    foreign = json.loads(abonent("org", "add", str(other["id"]), "Theirs", "--json").output)
    assert "does not exist" in abonent("customer", "attach", str(customer["id"]), "C-3",
                                       "--unit", str(foreign["id"]), code=2).stderr
    after = json.loads(abonent("org", "tree", str(customer["id"]), "--json").output)
    assert after == tree

    removed = json.loads(abonent("org", "remove", str(north["id"]), "--json").output)
    assert removed["accounts_moved"] == 2
    tree = json.loads(abonent("org", "tree", str(customer["id"]), "--json").output)
    assert [(row["name"], row["accounts"]) for row in tree["units"]] == [("Sales", 2)]
    abonent("grant", "remove", str(grant["id"]))
    assert json.loads(abonent("grant", "list", "--json").output) == []
    abonent("customer", "detach", "C-3")
    for group in ("customer", "org", "grant"):
        assert "Usage" in abonent(group, "--help").output
    assert org.RIGHTS == ("view", "pay", "service", "users")
