"""The suspended subscriber's journey in Debian's Chromium, on SQLite and
PostgreSQL: the overview shows the amount that restores the service and
offers a promised payment; taking it brings the service back — the
enforcer's request reaches the BRAS (``nas-sim``: RADIUS login, accounting,
CoA/Disconnect answers) and the session it dials again has the tariff's
speed — and the
overview's days left are right before (none: suspended) and after.

The operator runs the captive portal for debtors (policy.suspend_mode =
redirect), so a suspended subscriber still has a session to restore.
"""

from __future__ import annotations

import re
import time
from decimal import Decimal

import pytest
from sqlalchemy import select

from aaa import enforcement
from aaa.models import EnforcementJob, Service
from aaa.server import RadiusServer
from cabinet import periods
from cabinet.app import CabinetServer
from rating import fees, ledger, runout
from rating.models import Account
from scripts.nas_sim import NasSimulator
from tests.conftest import free_tcp_port, free_udp_port, make_context
from tests.e2e.test_cabinet_browser import VIEWPORTS, browser, log_in  # noqa: F401 (fixture)
from tests.factories import make_nas, make_tariff
from tests.integration.cabinet_helpers import seed_subscriber
from tests.integration.test_enforcement import FAST

pytestmark = pytest.mark.peer

PORTAL_KBPS = 512


def wait_for(condition, timeout=10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def _fits_360(page):
    """No sideways scrolling on a small phone."""
    page.set_viewport_size({"width": 360, "height": 800})
    page.wait_for_function("window.innerWidth === 360")
    width = page.evaluate("document.documentElement.scrollWidth")
    wide = page.evaluate("""[...document.querySelectorAll('body *')]
        .filter(e => e.getBoundingClientRect().right > 360)
        .map(e => e.tagName + '.' + e.className + ' ' + (e.getAttribute('data-test') || '')
                  + ' ' + Math.round(e.getBoundingClientRect().right)).slice(0, 8)""")
    page.set_viewport_size(VIEWPORTS["phone"])
    assert width <= 360, f"the overview is {width} px wide at 360 px: {wide}"


def _redial(sim, tries=8):
    """Dial as a router does after a Disconnect: again after a pause. The
    RADIUS server re-reads changed accounts once a second
    (aaa.server._refresh_loop), so a redial at once may still get the
    portal; such a session is hung up (Accounting Stop) and dialled again."""
    session = None
    for _ in range(tries):
        time.sleep(1.0)
        session = sim.login("debtor1", "sim-pass")
        if session is None or (session.down_kbps, session.up_kbps) != (PORTAL_KBPS,
                                                                        PORTAL_KBPS):
            return session
        sim.sessions.pop(session.acct_session_id, None)
        sim._accounting(session, "Stop", "User-Request")
    return session


def _jobs(ctx):
    with ctx.Session() as session:
        return [(job.action, job.status, job.profile)
                for job in session.scalars(select(EnforcementJob).order_by(EnforcementJob.id))]


@pytest.fixture
def network(db_url, tmp_path):
    """The cabinet, the RADIUS server and a simulated BRAS with the debtor's
    session in the captive portal."""
    context = make_context(db_url, data_dir=tmp_path, policy_suspend_mode="redirect",
                           policy_redirect_rate_kbps=str(PORTAL_KBPS))
    coa_port = free_udp_port()
    with context.Session() as session:
        make_tariff(session, name="Home 310", fee="310.00", fee_period="daily",
                    rate_down_kbps=8_000, rate_up_kbps=4_000, negative_rate_kbps=256)
        make_nas(session, vendor="mikrotik", secret="sim-secret", coa_port=coa_port)
        session.commit()
    subscriber = seed_subscriber(context, balance="0", tariff="Home 310")
    with context.Session() as session:
        session.add(Service(account_id=subscriber.account_id, kind="pppoe", login="debtor1",
                            password="sim-pass", static_ipv4="10.20.0.9"))
        ledger.post(session, account_id=subscriber.account_id, amount=Decimal("-43.20"),
                    kind="fee", key="fee:debt", author="scheduler:fees", memo="test debt")
        fees.apply_policies(session)
        session.commit()
    cabinet = CabinetServer(context, host="127.0.0.1", port=free_tcp_port()).start()
    radius = RadiusServer(context, host="127.0.0.1", auth_port=0, acct_port=0)
    radius.start()
    sim = NasSimulator([("debtor1", "sim-pass")], secret="sim-secret",
                       auth_port=radius.auth_port, acct_port=radius.acct_port,
                       coa_port=coa_port, interim_s=0.3)
    try:
        sim.start()
        yield context, cabinet, sim, subscriber
    finally:
        sim.stop()
        radius.stop()
        cabinet.stop()
        context.dispose()


def test_a_suspended_subscriber_takes_a_promised_payment_and_is_back_online(
        browser, network, db_url, artifacts):  # noqa: F811
    ctx, cabinet, sim, subscriber = network
    backend = db_url.split(":")[0].split("+")[0]
    assert len(sim.sessions) == 1
    live = next(iter(sim.sessions.values()))
    # In the captive portal: the portal's speed, not the tariff's.
    assert (live.down_kbps, live.up_kbps) == (PORTAL_KBPS, PORTAL_KBPS)

    page = browser.new_page(viewport=VIEWPORTS["phone"], locale="ru-RU")
    try:
        log_in(page, cabinet.url, subscriber)
        assert page.locator("h1").count() == 1
        restore = page.locator("[data-test=restore]")
        assert "Восстановите доступ" in restore.inner_text()
        assert page.get_attribute("[data-test=needed]", "data-amount") == "43.20"
        assert "43,20" in page.inner_text("[data-test=needed]")
        # Suspended: no days left to count, and the page says what holds.
        assert page.locator("[data-test=days-left]").count() == 0
        assert "после погашения долга" in page.inner_text("[data-test=next-steps]")
        assert page.get_attribute("[data-test=topup-needed]", "href").startswith("/topup?amount=")
        _fits_360(page)
        page.screenshot(path=str(artifacts / f"overview-suspended-ru-phone-{backend}.png"),
                        full_page=True)

        # The offer starts at the debt in whole roubles; the subscriber takes 100.
        assert page.input_value("#promised-amount") == "44,00" or \
            page.input_value("#promised-amount") == "44.00"
        page.fill("#promised-amount", "100")
        page.click("[data-test=take-promised]")
        page.wait_for_selector("[data-test=days-left]")
        assert page.locator("[data-test=restore]").count() == 0

        with ctx.Session() as session:
            account = session.get(Account, subscriber.account_id)
            assert (account.balance, account.profile) == (Decimal("56.80"), "normal")
        today = periods.local_today(ctx.settings.get("", "timezone"))
        expected = runout.forecast(
            balance=Decimal("56.80"), credit_limit=Decimal(0), today=today,
            fees=[runout.RecurringFee(Decimal("310.00"), "daily",
                                      stops_in=frozenset({"suspended"}))])
        runway = page.locator("[data-test=runway]")
        assert runway.get_attribute("data-date") == expected.runs_out_on.isoformat()
        assert runway.get_attribute("data-days") == str((expected.runs_out_on - today).days)
        assert re.search(r"Осталось|Остался", page.inner_text("[data-test=days-left]"))
        _fits_360(page)
        page.screenshot(path=str(artifacts / f"overview-restored-ru-phone-{backend}.png"),
                        full_page=True)

        # The enforcer tells the BRAS. RouterOS cannot take a session out of
        # the portal's address list, so it is a Disconnect-Request
        # (aaa.vendors); the router dials again and gets the tariff's speed.
        settings = enforcement.Settings.from_settings(ctx.settings)
        assert enforcement.run_once(ctx.Session, timers=FAST, settings=settings)
        assert wait_for(lambda: live.acct_session_id not in sim.sessions), _jobs(ctx)
        assert _jobs(ctx) == [("disconnect", "done", "normal")]
        again = _redial(sim)
        assert again is not None and (again.down_kbps, again.up_kbps) == (8_000, 4_000)
        # Nothing left to do: the new session has the profile it should.
        assert enforcement.run_once(ctx.Session, timers=FAST, settings=settings,
                                    sweep=True) == 0
    finally:
        page.close()
