"""rating.profile.desired_profile: the one answer RADIUS, the enforcer and
the cabinet give, and aaa.vendors' rendering of it, attribute by attribute."""

import datetime as dt
from decimal import Decimal

import pytest

from aaa import vendors
from aaa.authorize import CLASS_PREFIX, Subscriber, decide
from rating import policies
from rating.profile import (FULL, NONE, REDIRECT, ActiveOption, TariffSpeeds, desired_profile,
                            parse_key)

NOW = dt.datetime(2026, 12, 5, 12, 0)
TARIFF = TariffSpeeds(100_000, 50_000, 1_000)
REDIRECT_LADDER = policies.ladder_from_settings({"suspend_mode": "redirect",
                                                 "redirect_rate_kbps": 0})


def turbo(multiplier=2, hours=24, code="turbo"):
    return ActiveOption(code, "turbo", multiplier, NOW - dt.timedelta(hours=1),
                        NOW + dt.timedelta(hours=hours))


def want(rung="normal", options=(), state="active", ladder=policies.DEFAULT_LADDER,
         tariff=TARIFF, now=NOW):
    return desired_profile(state=state, rung=rung, tariff=tariff, options=options, now=now,
                           ladder=ladder)


def test_the_ladder_decides_and_options_stack_on_it():
    assert want().key == "full:100000/50000"
    assert want(options=[turbo(3)]).key == "full:300000/150000"
    assert want(options=[turbo(3)]).name == "turbo"
    assert want("throttled", [turbo()]).key == "full:1000/1000"
    assert want("suspended", [turbo()]).key == NONE
    assert want("suspended", ladder=REDIRECT_LADDER).key == "redirect:1000/1000"
    assert want(state="frozen").access == NONE
    assert want(tariff=None).access == NONE
    # A throttle with no negative-balance speed is no access at all.
    assert want("throttled", tariff=TariffSpeeds(100_000, 50_000, 0)).access == NONE


def test_the_turbo_survives_suspension_and_ends_on_time():
    options = [turbo(2, hours=23)]
    assert want("suspended", options).access == NONE
    restored = want("normal", options)
    assert restored.key == "full:200000/100000" and restored.until == options[0].ends_at
    assert want("normal", options, now=options[0].ends_at).key == "full:100000/50000"


def test_the_largest_running_multiplier_wins():
    later = ActiveOption("night", "turbo", 4, NOW + dt.timedelta(hours=1),
                         NOW + dt.timedelta(hours=5))
    assert want(options=[turbo(2), later]).multiplier == 2  # not started yet
    assert want(options=[turbo(2), later], now=NOW + dt.timedelta(hours=2)).multiplier == 4


@pytest.mark.parametrize("key,parsed", [
    ("full:1/2", (FULL, 1, 2)), ("redirect:10/10", (REDIRECT, 10, 10)), ("none", (NONE, 0, 0)),
    ("full:x/2", None), ("other:1/2", None), ("", None), (None, None)])
def test_profile_keys_parse_strictly(key, parsed):
    assert parse_key(key) == parsed


def test_the_ladder_from_settings_refuses_an_unknown_mode():
    with pytest.raises(ValueError, match="suspend_mode"):
        policies.ladder_from_settings({"suspend_mode": "maybe", "redirect_rate_kbps": 0})
    assert policies.decide(Decimal("-5"), Decimal("10")) == "throttled"


# -- vendors: the exact attributes of each state ------------------------------

FULL_PROFILE = want()
PORTAL = want("suspended", ladder=REDIRECT_LADDER)


@pytest.mark.parametrize("vendor,applied,expected", [
    ("mikrotik", "full:1000/1000", ("coa", [("Mikrotik-Rate-Limit", "50000k/100000k")])),
    ("mikrotik", "redirect:1000/1000", ("disconnect", [])),
    ("cisco", "redirect:1000/1000", ("coa", [
        ("Cisco-AVPair", "ip:qos-policy-in=add-class(sub,(class-default),police(50000000))"),
        ("Cisco-AVPair", "ip:qos-policy-out=add-class(sub,(class-default),shape(100000000))"),
        ("Cisco-AVPair", "subscriber:command=deactivate-service"),
        ("Cisco-AVPair", "subscriber:service-name=ABONENT_REDIRECT")])),
    ("juniper", "full:1000/1000", ("coa", [("ERX-Ingress-Policy-Name", "rate-50000k"),
                                           ("ERX-Egress-Policy-Name", "rate-100000k")])),
    ("juniper", "redirect:1000/1000", ("coa", [
        ("ERX-Ingress-Policy-Name", "rate-50000k"), ("ERX-Egress-Policy-Name", "rate-100000k"),
        ("ERX-Service-Deactivate", "captive-portal")])),
    ("huawei", "full:1000/1000", ("coa", [("Huawei-Input-Average-Rate", 50_000_000),
                                          ("Huawei-Output-Average-Rate", 100_000_000)])),
    ("accel-ppp", "full:1000/1000", ("coa", [("Filter-Id", "100000/50000")])),
    ("generic", "full:1000/1000", ("disconnect", [])),
])
def test_each_vendor_is_told_the_full_speed_by_its_own_words(vendor, applied, expected):
    assert vendors.coa_plan(vendors.spec_for(vendor), FULL_PROFILE, applied) == expected


@pytest.mark.parametrize("vendor,expected", [
    ("mikrotik", ("coa", [("Mikrotik-Rate-Limit", "1000k/1000k"),
                          ("Mikrotik-Address-List", "abonent-redirect")])),
    ("cisco", ("coa", [
        ("Cisco-AVPair", "ip:qos-policy-in=add-class(sub,(class-default),police(1000000))"),
        ("Cisco-AVPair", "ip:qos-policy-out=add-class(sub,(class-default),shape(1000000))"),
        ("Cisco-AVPair", "subscriber:command=activate-service"),
        ("Cisco-AVPair", "subscriber:service-name=ABONENT_REDIRECT")])),
    ("juniper", ("coa", [("ERX-Ingress-Policy-Name", "rate-1000k"),
                         ("ERX-Egress-Policy-Name", "rate-1000k"),
                         ("ERX-Service-Activate", "captive-portal")])),
    ("huawei", ("coa", [("Huawei-Input-Average-Rate", 1_000_000),
                        ("Huawei-Output-Average-Rate", 1_000_000),
                        ("Huawei-PortalURL", "https://pay.example/")])),
    # accel-ppp has no portal here: the portal state gives no session.
    ("accel-ppp", ("disconnect", [])),
])
def test_each_vendor_is_sent_to_the_captive_portal_by_its_own_words(vendor, expected):
    assert vendors.coa_plan(vendors.spec_for(vendor), PORTAL, "full:100000/50000",
                            "https://pay.example/") == expected


def test_a_nas_override_replaces_its_vendors_words_and_is_checked():
    override = vendors.parse_override(
        '{"rate": [["Filter-Id", "plan-{down_kbps}"]], "redirect_coa": [], "coa": true}')
    spec = vendors.spec_for("mikrotik", override)
    assert vendors.coa_plan(spec, FULL_PROFILE, "full:1/1") == (
        "coa", [("Filter-Id", "plan-100000")])
    assert vendors.coa_plan(spec, PORTAL, "full:1/1") == ("disconnect", [])
    for bad, message in [('{"rate": [["No-Such-Attr", "x"]]}', "not in the dictionary"),
                         ('{"rate": [["Filter-Id", "{secret}"]]}', "may use only"),
                         ('{"colour": 1}', "unknown override"), ("[1", "not JSON"),
                         ('{"coa": "yes"}', "true or false")]:
        with pytest.raises(vendors.OverrideError, match=message):
            vendors.parse_override(bad)


def _subscriber(**changes):
    values = dict(service_id=1, kind="pppoe", account_id=7, account_number="100007",
                  login="u", password="p", mac=None, circuit_id=None, static_ipv4=None,
                  pool=None, account_state="active", profile="normal", rate_down_kbps=100_000,
                  rate_up_kbps=50_000, negative_rate_kbps=1_000, version=1)
    values.update(changes)
    return Subscriber(**values)


def test_the_access_accept_is_the_desired_profile_and_names_it_in_class():
    boosted = _subscriber(options=(turbo(2),))
    decision = decide(boosted, True, vendor="mikrotik", interim_interval=0, now=NOW)
    attributes = dict(decision.attributes)
    assert attributes["Mikrotik-Rate-Limit"] == "100000k/200000k"
    assert attributes["Class"] == CLASS_PREFIX + b"full:200000/100000"
    assert decision.valid_until == boosted.options[0].ends_at
    portal = decide(_subscriber(profile="suspended"), True, vendor="mikrotik",
                    interim_interval=0, now=NOW, ladder=REDIRECT_LADDER)
    assert dict(portal.attributes)["Mikrotik-Address-List"] == "abonent-redirect"
    # accel-ppp has no portal: a portal state is a reject, never full access.
    assert not decide(_subscriber(profile="suspended"), True, vendor="accel-ppp",
                      interim_interval=0, now=NOW, ladder=REDIRECT_LADDER).accept
    assert not decide(_subscriber(profile="suspended"), True, vendor="mikrotik",
                      interim_interval=0, now=NOW).accept


def test_the_enforcer_reads_its_coa_and_policy_settings():
    from aaa.enforcement import Settings
    from config.settings import load_settings
    settings = Settings.from_settings(load_settings(environ={
        "ABONENT_COA_TIMEOUT": "0.5", "ABONENT_COA_MAX_DURATION": "7",
        "ABONENT_COA_BACKOFF_MAX": "120", "ABONENT_COA_LANE_SIZE": "3",
        "ABONENT_POLICY_SUSPEND_MODE": "redirect", "ABONENT_POLICY_REDIRECT_URL": "https://p/"}))
    assert (settings.irt, settings.mrd, settings.backoff_max, settings.lane_size) == (
        0.5, 7.0, 120.0, 3)
    assert settings.timers == {"irt": 0.5, "mrt": 16.0, "mrd": 7.0}
    assert settings.ladder[0].mode == policies.REDIRECT
    assert settings.redirect_url == "https://p/"


def test_backoff_doubles_to_its_cap_and_never_passes_it():
    import random

    from aaa.enforcement import backoff
    rng = random.Random(3)
    waits = [backoff(tries, 5.0, 300.0, rng) for tries in range(1, 12)]
    assert 4.5 <= waits[0] <= 5.5 and 9.0 <= waits[1] <= 11.0
    assert max(waits) <= 300.0 and waits[-1] >= 270.0
