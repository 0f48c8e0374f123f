"""The cabinet's navigation: every place as a tab for a desktop, and for a
phone a bar of the places used most with "More" for the rest; the place a
page belongs to is marked in both. SQLite and PostgreSQL."""

from __future__ import annotations

import re

import pytest

from tests.integration.cabinet_helpers import (  # noqa: F401 (fixtures)
    app, cabinet_ctx, client, log_in, seed_subscriber)

BAR = ("dashboard", "payments", "traffic", "history")


@pytest.fixture
def page(client, cabinet_ctx):
    subscriber = seed_subscriber(cabinet_ctx)
    assert log_in(client, subscriber.login, subscriber.password, lang="ru").status_code == 302

    def get(path):
        answer = client.get(path)
        assert answer.status_code == 200, path
        return answer.text
    return get


def _marked(html: str, where: str) -> dict[str, str]:
    """{place: aria-current} of the links named ``where``-place."""
    return {name: current for name, current in re.findall(
        rf'data-test="{where}-(\w+)"\s*(?:aria-current="(\w+)")?', html)}


def test_a_desktop_has_every_place_and_a_phone_has_four_and_more(page):
    html = page("/history")
    tabs, bar, more = _marked(html, "tab"), _marked(html, "bar"), _marked(html, "more")
    assert tuple(bar) == BAR
    # Every place is a tab, and on a phone in the bar or under More, once.
    assert set(tabs) == set(bar) | set(more) and not set(bar) & set(more)
    assert len(tabs) >= 14
    assert tabs["history"] == bar["history"] == "page"
    assert [name for name, current in {**tabs, **bar, **more}.items() if current] == ["history"]
    assert '<summary class="lit">' not in html  # History is in the bar, not under More
    # Russian names, a landmark name on both navs.
    assert html.count('aria-label="Разделы"') == 2 and "Ещё" in html


@pytest.mark.parametrize("path, tab, bar_item, more_lit", [
    ("/topup", "topup", "payments", False),          # money lives under Payments
    ("/promised", "promised_payment", "payments", False),
    ("/options", "tariffs", None, True),             # an inner page of a place in More
    ("/packages", "packages_page", None, True),
    ("/", "dashboard", "dashboard", False),
])
def test_the_place_of_a_page_is_marked(page, path, tab, bar_item, more_lit):
    html = page(path)
    tabs, bar = _marked(html, "tab"), _marked(html, "bar")
    assert [name for name, current in tabs.items() if current] == [tab]
    assert [name for name, current in bar.items() if current] == ([bar_item] if bar_item else [])
    assert ('<summary class="lit">' in html) == more_lit
