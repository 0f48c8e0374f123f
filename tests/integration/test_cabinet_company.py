"""A customer's pages in the cabinet (issue 21): the consolidated overview,
the hierarchy editor as plain forms, rights on branches, the consolidated
invoice and act (HTML and PDF); and family invitations. Both databases.

A login with rights on one branch sees and changes only that branch; one
outside it is answered 404 (403 for a unit it sees but may not change) and
nothing changes."""

from __future__ import annotations

import io

import pytest
from pypdf import PdfReader
from sqlalchemy import func, select, text

from rating import ledger, org
from rating.accounts import create_cabinet_user
from rating.models import Account, CabinetUser, CabinetUserAccount, OrgGrant, OrgUnit
from tests.factories import make_account, make_company
from tests.integration.cabinet_helpers import (  # noqa: F401 (fixtures)
    app, cabinet_ctx, client, csrf_token, log_in, seed_subscriber)

PASSWORD = "company-pass-1"
TABLES = ("accounts", "org_units", "org_grants", "customers", "cabinet_user_accounts",
          "family_invitations", "ledger_entries")


def snapshot(ctx):
    with ctx.engine.connect() as conn:
        return {t: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {t} ORDER BY 1"))]
                for t in TABLES}


class Company:
    def __init__(self, ctx, **shape):
        self.ctx = ctx
        with ctx.Session() as session:
            customer, units, accounts = make_company(session, **shape)
            self.customer_id, self.accounts = customer.id, accounts
            self.units = {name: unit.id for name, unit in units.items()}
            head = make_account(session, kind="company", name="OOO Romashka head office")
            org.attach_account(session, head.id, customer.id, actor="test")
            self.head_id = head.id
            # A month's fee on every account: what the overview and invoice sum.
            for n, account_id in enumerate(accounts):
                ledger.post(session, account_id=account_id, amount=f"-{100 + n % 7}",
                            kind="fee", key=f"fee:company:{account_id}", author="test")
            create_cabinet_user(session, head, login="director", password=PASSWORD)
            create_cabinet_user(session, head, login="branch", password=PASSWORD, role="viewer")
            director = session.scalar(select(CabinetUser.id).where(CabinetUser.login == "director"))
            branch = session.scalar(select(CabinetUser.id).where(CabinetUser.login == "branch"))
            org.grant(session, director, customer.id, org.RIGHTS, actor="test")
            org.grant(session, branch, customer.id, "view,pay,users", actor="test",
                      unit_id=self.units["Dept 1"])
            session.commit()
            self.branch_accounts = org.branch_accounts(session, customer.id, self.units["Dept 1"])
            self.other_accounts = org.branch_accounts(session, customer.id, self.units["Dept 0"])

    def browser(self, app, login, lang="en"):
        browser = app.test_client()
        assert log_in(browser, login, PASSWORD, lang=lang).status_code == 302
        return browser


@pytest.fixture
def company(cabinet_ctx):
    return Company(cabinet_ctx)


def post(browser, path, **data):
    page = browser.get("/password")
    return browser.post(path, data={"csrf_token": csrf_token(page.text), **data})


def test_the_overview_shows_the_branch_and_its_totals(app, company):
    browser = company.browser(app, "branch")
    page = browser.get("/company/")
    assert page.status_code == 200
    # Dept 1: 3 teams × 2 employees × 1 line.
    assert page.text.count('data-test="account-row"') == 6
    assert "Line 1.0.0.0" in page.text and "Line 0.0.0.0" not in page.text
    assert "Line 2." not in page.text and "head office" not in page.text
    # A branch of another department in the filter: not found.
    assert browser.get(f"/company/?unit={company.units['Dept 0']}").status_code == 404
    assert browser.get(f"/company/?unit={company.units['Team 1.2']}").text.count(
        'data-test="account-row"') == 2
    # The login starts on an account of its branch, not its own head office.
    dashboard = browser.get("/")
    assert dashboard.status_code == 200 and "head office" not in dashboard.text
    director = company.browser(app, "director")
    whole = director.get("/company/")
    assert whole.text.count('data-test="branch-row"') == 4  # 3 departments + no department
    assert "Not in a department" in whole.text
    # The company's Users page points to the rights on departments.
    assert 'data-test="branch-rights"' in director.get("/users").text


def test_a_branch_login_cannot_reach_another_branch(app, company):
    before = snapshot(company.ctx)
    browser = company.browser(app, "branch")
    foreign_unit = company.units["Team 0.1"]
    foreign_account = company.other_accounts[0]
    switched = post(browser, "/account/switch", account_id=str(foreign_account), next="/")
    assert switched.status_code == 404
    for path, data in [
            (f"/company/tree/{foreign_unit}/rename", {"name": "Mine"}),
            (f"/company/tree/{foreign_unit}/move", {"parent_id": str(company.units["Dept 1"])}),
            (f"/company/tree/{foreign_unit}/delete", {}),
    ]:
        assert post(browser, path, customer="", **data).status_code == 404, path
    # Its own branch's root: seen, but not its to move or delete.
    own_root = company.units["Dept 1"]
    assert post(browser, f"/company/tree/{own_root}/delete").status_code == 403
    assert post(browser, f"/company/tree/{own_root}/move", parent_id="").status_code == 403
    # Moving a unit of its own under a foreign one, adding under a foreign one.
    assert post(browser, f"/company/tree/{company.units['Team 1.0']}/move",
                parent_id=str(foreign_unit)).status_code == 404
    assert post(browser, "/company/tree/add", name="Spy", parent_id=str(foreign_unit)) \
        .status_code == 404
    assert post(browser, "/company/tree/add", name="Root", parent_id="").status_code == 403
    # Rights on the whole company, or on another branch, or rights it lacks.
    assert post(browser, "/company/access/grant", login="branch", unit_id="",
                rights="view").status_code == 403
    assert post(browser, "/company/access/grant", login="director",
                unit_id=str(company.units["Team 1.0"]), rights="service").status_code == 403
    assert post(browser, "/company/documents", documents="consolidated").status_code == 403
    with company.ctx.Session() as session:
        director_grant = session.scalar(select(OrgGrant.id).where(OrgGrant.org_unit_id.is_(None)))
    assert post(browser, f"/company/access/{director_grant}/revoke").status_code == 404
    # The invoice of another branch.
    assert browser.get(f"/company/invoice?unit={foreign_unit}").status_code == 404
    assert browser.get(f"/company/invoice.pdf?unit={foreign_unit}").status_code == 404
    # Another customer: not found.
    assert browser.get(f"/company/?customer={company.customer_id + 1000}").status_code == 404
    assert snapshot(company.ctx) == before


def test_the_editor_changes_the_tree_with_plain_forms(app, company):
    browser = company.browser(app, "branch")
    dept = company.units["Dept 1"]
    assert post(browser, "/company/tree/add", name="Logistics",
                parent_id=str(dept)).status_code == 302
    with company.ctx.Session() as session:
        new = session.scalar(select(OrgUnit).where(OrgUnit.name == "Logistics"))
        assert new.parent_id == dept
    assert post(browser, f"/company/tree/{new.id}/rename", name="Supply").status_code == 302
    team = company.units["Team 1.0"]
    assert post(browser, f"/company/tree/{team}/move", parent_id=str(new.id)).status_code == 302
    # Below itself: refused with a sentence, nothing moved.
    refused = post(browser, f"/company/tree/{new.id}/move", parent_id=str(team))
    assert refused.status_code == 302
    assert "below itself" in browser.get("/company/tree").text
    number = None
    with company.ctx.Session() as session:
        assert session.get(OrgUnit, team).parent_id == new.id
        assert session.get(OrgUnit, new.id).parent_id == dept
        account = session.get(Account, company.branch_accounts[0])
        number = account.number
    assert post(browser, "/company/tree/attach", number=number,
                unit_id=str(new.id)).status_code == 302
    assert post(browser, f"/company/tree/{new.id}/delete").status_code == 302
    with company.ctx.Session() as session:
        assert session.get(OrgUnit, new.id) is None
        assert session.get(OrgUnit, team).parent_id == dept
        assert session.get(Account, company.branch_accounts[0]).org_unit_id == dept
    page = browser.get("/company/tree")
    assert page.status_code == 200 and "Team 1.0" in page.text and "Team 0.0" not in page.text


def test_rights_are_given_and_taken_back_on_a_branch(app, company):
    browser = company.browser(app, "branch")
    with company.ctx.Session() as session:
        head = session.get(Account, company.head_id)
        create_cabinet_user(session, head, login="teamlead", password=PASSWORD, role="viewer")
        session.commit()
    team = company.units["Team 1.2"]
    assert post(browser, "/company/access/grant", login="teamlead", unit_id=str(team),
                rights=["view", "pay"]).status_code == 302
    lead = company.browser(app, "teamlead")
    assert lead.get("/company/").text.count('data-test="account-row"') == 2
    with company.ctx.Session() as session:
        grant_id = session.scalar(select(OrgGrant.id).where(OrgGrant.org_unit_id == team))
    assert post(browser, f"/company/access/{grant_id}/revoke").status_code == 302
    # Its rights are gone at the next request: without grants it is what it
    # was before issue 21, a viewer of the account its login belongs to.
    assert "head office" in lead.get("/").text
    with company.ctx.Session() as session:
        number = session.get(Account, company.branch_accounts[-1]).number
    assert number not in lead.get("/").text
    assert "no rights on a company" in lead.get("/company/").text


def test_the_consolidated_invoice_and_act(app, company):
    director = company.browser(app, "director")
    page = director.get("/company/invoice")
    assert page.status_code == 200
    assert page.text.count('data-test="invoice-line"') == 18
    with company.ctx.Session() as session:
        expected = -session.scalar(select(func.sum(Account.balance)).where(
            Account.id.in_(company.accounts)))
    total = page.text.split('data-test="invoice-total"')[1].split("</tr>")[0]
    assert f"{expected:,.2f}" in total
    branch = director.get(f"/company/invoice?unit={company.units['Dept 2']}&kind=act")
    assert branch.text.count('data-test="invoice-line"') == 6 and "Act No." in branch.text
    pdf = director.get(f"/company/invoice.pdf?unit={company.units['Dept 2']}")
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    words = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.data)).pages)
    assert "Line 2.0.0.0" in words and "Line 0.0.0.0" not in words and "Invoice No." in words
    russian = company.browser(app, "director", lang="ru")
    act = russian.get("/company/act.pdf")
    words = "".join(page.extract_text() for page in PdfReader(io.BytesIO(act.data)).pages)
    assert "Акт" in words and "Line 0.0.0.0" in words
    # The customer's choice of documents.
    assert post(director, "/company/documents", documents="consolidated").status_code == 302
    assert "a line per account" in director.get("/company/invoice").text
    assert post(director, "/company/documents", documents="monthly").status_code == 302
    assert "Documents are per account or consolidated" in director.get("/company/access").text


def test_family_invitation_accepted_gives_view_and_pay(app, cabinet_ctx):
    parent = seed_subscriber(cabinet_ctx, balance="100", login="parent", password=PASSWORD)
    granny = seed_subscriber(cabinet_ctx, balance="42", login="granny", password=PASSWORD,
                             name="Granny")
    inviter = app.test_client()
    log_in(inviter, "parent", PASSWORD, lang="en")
    assert post(inviter, "/family/invite", number=granny.number).status_code == 302
    assert granny.number in inviter.get("/family/").text
    # Not yet accepted: granny's account is out of reach.
    assert post(inviter, "/account/switch", account_id=str(granny.account_id)).status_code == 404
    holder = app.test_client()
    log_in(holder, "granny", PASSWORD, lang="en")
    page = holder.get("/family/")
    assert "parent asks to watch" in page.text
    with cabinet_ctx.Session() as session:
        invitation = session.execute(text("SELECT id FROM family_invitations")).scalar()
    # The inviter cannot accept its own request.
    assert post(inviter, f"/family/invitations/{invitation}/accept").status_code == 404
    assert post(holder, f"/family/invitations/{invitation}/accept").status_code == 302
    watched = inviter.get("/family/")
    assert "42.00" in watched.text
    assert post(inviter, "/account/switch", account_id=str(granny.account_id),
                next="/").status_code == 302
    assert "42.00" in inviter.get("/").text
    # Pay: yes; change the contacts or the tariff: no.
    assert inviter.get("/topup").status_code == 200
    assert post(inviter, "/contacts", email="x@example.ru").status_code == 403
    # The holder ends it; the inviter is back on its own account.
    with cabinet_ctx.Session() as session:
        link = session.scalar(select(CabinetUserAccount.id))
    assert post(holder, f"/family/links/{link}/end").status_code == 302
    assert "42.00" not in inviter.get("/").text
    # The one-time code: made by the holder, used once by the inviter.
    made = post(holder, "/family/code")
    code = made.text.split('data-test="family-code"')[0].rsplit('value="', 1)[1].split('"')[0]
    assert post(inviter, "/family/redeem", number=granny.number, code="WRONG-CODE") \
        .status_code == 302
    with cabinet_ctx.Session() as session:
        assert session.scalar(select(func.count(CabinetUserAccount.id))) == 0
    assert post(inviter, "/family/redeem", number=granny.number, code=code).status_code == 302
    with cabinet_ctx.Session() as session:
        rows = session.execute(select(CabinetUserAccount.rights)).all()
        assert [row.rights for row in rows] == ["view,pay"]
    stranger = seed_subscriber(cabinet_ctx, login="stranger", password=PASSWORD)
    other = app.test_client()
    log_in(other, stranger.login, PASSWORD, lang="en")
    assert post(other, "/family/redeem", number=granny.number, code=code).status_code == 302
    with cabinet_ctx.Session() as session:
        assert session.scalar(select(func.count(CabinetUserAccount.id))) == 1
        # The inviter drops it from its side.
        link = session.scalar(select(CabinetUserAccount.id))
    assert post(other, f"/family/links/{link}/end").status_code == 404
    assert post(inviter, f"/family/links/{link}/end").status_code == 302
