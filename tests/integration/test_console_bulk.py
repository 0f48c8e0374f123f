"""`abonent bulk` and `abonent change` as an admin's shell runs them: a
preview from a file of numbers, apply, show, revert; scheduling and
cancelling; bad input exits 2 with one sentence and writes nothing."""

import datetime as dt
import json

from sqlalchemy import func, select

from rating.models import Account, BulkOperation, ScheduledChange
from tests.conftest import make_context
from tests.factories import make_account, make_tariff


def test_bulk_and_change_commands(abonent, abonent_exe, db_url, tmp_path):
    context = make_context(db_url)
    with context.Session() as session:
        old = make_tariff(session, name="Cli 300", fee="300.00")
        make_tariff(session, name="Cli 500", fee="500.00")
        numbers = [make_account(session, tariff=old.name).number for _ in range(4)]
        session.commit()
    listed = tmp_path / "numbers.txt"
    listed.write_text("\n".join(numbers[:3]) + "\n")
    shown = json.loads(abonent("bulk", "preview", "tariff", "--to", "Cli 500",
                                   "--accounts", f"@{listed}", "--json").stdout)
    assert (shown["state"], shown["total"], shown["ready"]) == ("previewed", 3, 3)
    assert shown["cost"] == "1500.00" and len(shown["items"]) == 3
    done = json.loads(abonent("bulk", "apply", str(shown["id"]), "--json").stdout)
    assert (done["state"], done["done"]) == ("applied", 3)
    again = abonent("bulk", "apply", str(shown["id"]))
    assert "3 done" in again.stdout
    table = abonent("bulk", "show", str(shown["id"])).stdout
    assert all(n in table for n in numbers[:3])
    back = abonent("bulk", "revert", str(shown["id"]))
    assert "apply it with: abonent bulk apply" in back.stdout
    listing = json.loads(abonent("bulk", "list", "--json").stdout)
    assert [row["kind"] for row in listing] == ["revert", "tariff"]
    # Bad input: a sentence, exit 2, nothing written.
    abonent_exe("bulk", "preview", "tariff", "--to", "No such", "--tariff", "Cli 300", code=2)
    abonent("bulk", "preview", "tariff", "--accounts", numbers[3], code=2)
    abonent("bulk", "preview", "freeze", "--until", "2027-01-01", "--accounts",
                "nobody", code=2)
    abonent("bulk", "apply", "999", code=2)
    with context.Session() as session:
        assert session.scalar(select(func.count()).select_from(BulkOperation)) == 2

    day = (dt.date.today() + dt.timedelta(days=3)).isoformat()
    row = json.loads(abonent("change", "schedule", numbers[3], "tariff", "--to", "Cli 500",
                                 "--on", day, "--json").stdout)
    assert row["state"] == "pending" and row["effective_on"] == day
    listed_changes = json.loads(abonent("change", "list", "--account", numbers[3],
                                            "--json").stdout)
    assert [c["id"] for c in listed_changes] == [row["id"]]
    abonent("change", "schedule", numbers[3], "tariff", "--to", "Cli 500", "--on",
                dt.date.today().isoformat(), code=2)
    abonent("change", "cancel", str(row["id"]))
    abonent("change", "cancel", str(row["id"]), code=2)
    with context.Session() as session:
        assert session.scalar(select(ScheduledChange.state)) == "cancelled"
        assert session.scalar(select(func.count()).select_from(Account).where(
            Account.next_tariff_id.is_not(None))) == 3
    for command in (("bulk", "--help"), ("bulk", "preview", "--help"), ("change", "--help")):
        assert "Usage" in abonent(*command).stdout
    context.dispose()
