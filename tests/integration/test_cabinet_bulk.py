"""The cabinet's bulk change and scheduled changes pages (issue 21): a
company login with the service right on a branch previews, applies and
reverts a tariff change for the branch's accounts, and no other."""

import datetime as dt

from sqlalchemy import func, select

from rating import org, scheduled_changes
from rating.accounts import create_cabinet_user
from rating.models import Account, BulkOperation, ScheduledChange
from tests.factories import make_account, make_tariff
from tests.integration.cabinet_helpers import (  # noqa: F401 (fixtures)
    app, cabinet_ctx, client, csrf_token, log_in)

ACTOR = "admin:test"


def seed_company(ctx, accounts=12, suffix=""):
    """A company: a head office login with service on the "Sales" branch,
    accounts in Sales and one outside it."""
    with ctx.Session() as session:
        old = make_tariff(session, name=f"Office 500{suffix}", fee="500.00")
        new = make_tariff(session, name=f"Office 800{suffix}", fee="800.00")
        head = make_account(session, kind="company", name="Romashka", tariff=old.name,
                            balance="5000")
        user = create_cabinet_user(session, head, login=f"romashka-it{suffix}",
                                   password="correct-horse-1")
        customer = org.create_customer(session, kind="company", name="Romashka", actor=ACTOR)
        sales = org.create_unit(session, customer.id, "Sales", actor=ACTOR)
        ids = [make_account(session, tariff=old.name, balance="1000").id
               for _ in range(accounts)]
        outside = make_account(session, tariff=old.name)
        org.attach_accounts(session, ids, customer.id, actor=ACTOR, unit_id=sales.id)
        org.attach_accounts(session, [head.id, outside.id], customer.id, actor=ACTOR)
        org.grant(session, user.id, customer.id, "view,service", actor=ACTOR, unit_id=sales.id)
        session.commit()
        numbers = [session.get(Account, i).number for i in ids]
        return dict(ids=ids, numbers=numbers, outside=outside.id, new=new.id, old=old.id,
                    login=user.login, new_name=new.name)


def test_preview_apply_and_revert_for_a_branch(client, cabinet_ctx):
    company = seed_company(cabinet_ctx)
    assert log_in(client, "romashka-it", "correct-horse-1", lang="en").status_code == 302
    page = client.get("/bulk")
    assert page.status_code == 200
    for number in company["numbers"]:
        assert f'data-test="bulk-account-{number}"' in page.text
    token = csrf_token(page.text)
    # An account outside the branch: refused before anything is written.
    outside = client.post("/bulk/preview", data={
        "csrf_token": token, "kind": "tariff", "tariff_id": company["new"],
        "accounts": [company["ids"][0], company["outside"]]})
    assert outside.status_code == 403
    # No CSRF token: 400.
    assert client.post("/bulk/preview", data={"kind": "tariff", "all": "1"}).status_code == 400
    with cabinet_ctx.Session() as session:
        assert session.scalar(select(func.count()).select_from(BulkOperation)) == 0
    shown = client.post("/bulk/preview", data={
        "csrf_token": token, "kind": "tariff", "tariff_id": company["new"], "all": "1"})
    assert shown.status_code == 302
    preview = client.get(shown.headers["Location"])
    assert 'data-test="bulk-ready">12<' in preview.text
    assert 'data-test="bulk-apply"' in preview.text
    with cabinet_ctx.Session() as session:
        operation_id = session.scalar(select(BulkOperation.id))
        assert session.scalar(select(func.count()).select_from(Account).where(
            Account.next_tariff_id.is_not(None))) == 0
    applied = client.post("/bulk/apply", data={"csrf_token": csrf_token(preview.text),
                                               "operation_id": operation_id})
    assert applied.status_code == 302
    done = client.get(applied.headers["Location"])
    assert 'data-test="bulk-done">12<' in done.text and 'data-test="bulk-revert"' in done.text
    with cabinet_ctx.Session() as session:
        ordered = set(session.scalars(select(Account.id).where(
            Account.next_tariff_id == company["new"])))
        assert ordered == set(company["ids"])
    # Again (a double click): nothing more.
    client.post("/bulk/apply", data={"csrf_token": csrf_token(done.text),
                                     "operation_id": operation_id})
    reverted = client.post("/bulk/revert", data={"csrf_token": csrf_token(done.text),
                                                 "operation_id": operation_id})
    assert reverted.status_code == 302
    back = client.get(reverted.headers["Location"])
    client.post("/bulk/apply", data={"csrf_token": csrf_token(back.text),
                                     "operation_id": reverted.headers["Location"].split("=")[-1]})
    with cabinet_ctx.Session() as session:
        assert session.scalar(select(func.count()).select_from(Account).where(
            Account.next_tariff_id.is_not(None))) == 0
        assert session.get(BulkOperation, operation_id).state == "reverted"


def test_scheduled_changes_listed_and_cancelled_in_russian(client, cabinet_ctx):
    company = seed_company(cabinet_ctx, accounts=2)
    with cabinet_ctx.Session() as session:
        inside = scheduled_changes.schedule(
            session, session.get(Account, company["ids"][0]), "tariff",
            {"tariff": "Office 800"}, dt.date.today() + dt.timedelta(days=5),
            today=dt.date.today(), actor=ACTOR)
        hidden = scheduled_changes.schedule(
            session, session.get(Account, company["outside"]), "unfreeze", {},
            dt.date.today() + dt.timedelta(days=5), today=dt.date.today(), actor=ACTOR)
        session.commit()
        inside_id, hidden_id = inside.id, hidden.id
    assert log_in(client, "romashka-it", "correct-horse-1", lang="ru").status_code == 302
    page = client.get("/changes")
    assert page.status_code == 200
    assert f'data-test="scheduled-{inside_id}"' in page.text
    assert f'data-test="scheduled-{hidden_id}"' not in page.text
    assert "Запланированные изменения" in page.text
    token = csrf_token(page.text)
    assert client.post("/changes/cancel", data={"csrf_token": token,
                                                "change_id": hidden_id}).status_code == 404
    assert client.post("/changes/cancel", data={"csrf_token": token,
                                                "change_id": inside_id}).status_code == 302
    with cabinet_ctx.Session() as session:
        assert session.get(ScheduledChange, inside_id).state == "cancelled"
        assert session.get(ScheduledChange, hidden_id).state == "pending"
    assert "Массовое изменение" in client.get("/bulk").text
