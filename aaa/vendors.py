"""How each NAS vendor wants to be told a subscriber's profile.

A vendor is a row of data (``VendorSpec``): which attributes set a speed,
which put a session into the captive portal and which take it out, and
whether its sessions can be changed live by CoA at all. Each attribute is
a (name, template) pair, the template filled from the profile's figures.
A NAS may override any part of its vendor's row (``Nas.vendor_override``,
JSON with the same keys), for routers configured with other policy or
service names. Directions are the hard part, so every row says which way
its words point:

- MikroTik ``Mikrotik-Rate-Limit`` is "rx/tx" from the router's interface:
  rx = what the router receives from the subscriber = upload. Units k =
  kbit/s. The captive portal is an address list the router's firewall
  redirects (``Mikrotik-Address-List``); RouterOS cannot drop a session
  from a list by CoA, so leaving the portal is a reconnect.
- Cisco ISG parameterised QoS: ``qos-policy-in`` polices what comes in from
  the subscriber (upload), ``qos-policy-out`` shapes what goes out
  (download); bit/s. The portal is an ISG service (L4 redirect) activated
  and deactivated by CoA; in an Access-Accept, an auto-activated service
  is named by ``Cisco-Account-Info = "A<service>"``.
- Juniper E-series/MX (ERX): ingress = from the subscriber (upload), egress =
  towards it (download); the values name policies configured on the router;
  the portal is a service activated and deactivated by name.
- accel-ppp's shaper reads ``Filter-Id`` as "down/up" in kbit/s; it has no
  captive portal of its own here, so a portal state gives no session.
- Huawei ``Input`` = from the subscriber (upload), ``Output`` = towards it
  (download); bit/s. The portal is ``Huawei-PortalURL``; leaving it is a
  reconnect.
"""

from __future__ import annotations

import json
import logging
import string
from dataclasses import dataclass, replace
from typing import Any, Mapping

from aaa.dictionary import dictionary
from rating.profile import FULL, NONE, REDIRECT, Profile, parse_key

log = logging.getLogger(__name__)

REDIRECT_SERVICE = "ABONENT_REDIRECT"
REDIRECT_LIST = "abonent-redirect"
FIELDS = ("down_kbps", "up_kbps", "down_bps", "up_bps", "redirect_url")


@dataclass(frozen=True)
class Rate:
    down_kbps: int
    up_kbps: int

    @property
    def down_bps(self) -> int:
        return self.down_kbps * 1000

    @property
    def up_bps(self) -> int:
        return self.up_kbps * 1000


Templates = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class VendorSpec:
    rate: Templates = ()
    # Access-Accept: what puts a new session into the captive portal.
    redirect_accept: Templates = ()
    # CoA: what moves a live session into the portal, and out of it. Empty
    # means the vendor cannot: the change is made by Disconnect (the next
    # Access-Accept carries the new state).
    redirect_coa: Templates = ()
    unredirect_coa: Templates = ()
    # False: no live change at all; every change is a Disconnect.
    coa: bool = True
    # A voice NAS (a SIP proxy, a VoIP gateway): its accounting is calls
    # (aaa.voice), its Access-Request the caller check, never a session.
    voice: bool = False

    @property
    def portal(self) -> bool:
        return bool(self.redirect_accept)


VENDORS: dict[str, VendorSpec] = {
    "generic": VendorSpec(coa=False),
    "mikrotik": VendorSpec(
        rate=(("Mikrotik-Rate-Limit", "{up_kbps}k/{down_kbps}k"),),
        redirect_accept=(("Mikrotik-Address-List", REDIRECT_LIST),),
        redirect_coa=(("Mikrotik-Address-List", REDIRECT_LIST),)),
    "cisco": VendorSpec(
        rate=(("Cisco-AVPair", "ip:qos-policy-in=add-class(sub,(class-default),police({up_bps}))"),
              ("Cisco-AVPair",
               "ip:qos-policy-out=add-class(sub,(class-default),shape({down_bps}))")),
        redirect_accept=(("Cisco-Account-Info", "A" + REDIRECT_SERVICE),),
        redirect_coa=(("Cisco-AVPair", "subscriber:command=activate-service"),
                      ("Cisco-AVPair", "subscriber:service-name=" + REDIRECT_SERVICE)),
        unredirect_coa=(("Cisco-AVPair", "subscriber:command=deactivate-service"),
                        ("Cisco-AVPair", "subscriber:service-name=" + REDIRECT_SERVICE))),
    "juniper": VendorSpec(
        rate=(("ERX-Ingress-Policy-Name", "rate-{up_kbps}k"),
              ("ERX-Egress-Policy-Name", "rate-{down_kbps}k")),
        redirect_accept=(("ERX-Service-Activate", "captive-portal"),),
        redirect_coa=(("ERX-Service-Activate", "captive-portal"),),
        unredirect_coa=(("ERX-Service-Deactivate", "captive-portal"),)),
    "accel-ppp": VendorSpec(rate=(("Filter-Id", "{down_kbps}/{up_kbps}"),)),
    "huawei": VendorSpec(
        rate=(("Huawei-Input-Average-Rate", "{up_bps}"),
              ("Huawei-Output-Average-Rate", "{down_bps}")),
        redirect_accept=(("Huawei-PortalURL", "{redirect_url}"),),
        redirect_coa=(("Huawei-PortalURL", "{redirect_url}"),)),
    # Kamailio or OpenSIPS with acc_radius/misc_radius (contrib/kamailio).
    "sip": VendorSpec(coa=False, voice=True),
    # A Cisco IOS voice gateway: h323-* and Cisco-AVPair "call-id=".
    "cisco-voip": VendorSpec(coa=False, voice=True),
}

_LISTS = ("rate", "redirect_accept", "redirect_coa", "unredirect_coa")


class OverrideError(ValueError):
    """A NAS's vendor override is not usable; the message says why."""


def _check_templates(key: str, value) -> Templates:
    if not isinstance(value, list) or not all(
            isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)
            for pair in value):
        raise OverrideError(f"{key} must be a list of [attribute, template] pairs")
    known = dictionary().attributes
    for name, template in value:
        if name not in known:
            raise OverrideError(f"{key}: attribute {name!r} is not in the dictionary")
        try:
            fields = {f for _, f, _, _ in string.Formatter().parse(template) if f}
        except ValueError as error:
            raise OverrideError(f"{key}: template {template!r}: {error}") from None
        if not fields <= set(FIELDS):
            raise OverrideError(f"{key}: template {template!r} may use only "
                                + ", ".join("{%s}" % f for f in FIELDS))
    return tuple((name, template) for name, template in value)


def parse_override(text: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """A NAS override (JSON text or a dict) checked, as stored: {"rate":
    [[name, template], ...], "redirect_accept": ..., "redirect_coa": ...,
    "unredirect_coa": ..., "coa": bool}; OverrideError if it is not."""
    if text in (None, "", {}):
        return {}
    if isinstance(text, str):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise OverrideError(f"the override is not JSON: {error.msg}") from None
    else:
        data = dict(text)
    if not isinstance(data, dict):
        raise OverrideError("the override must be a JSON object")
    unknown = set(data) - set(_LISTS) - {"coa"}
    if unknown:
        raise OverrideError(f"unknown override key(s): {', '.join(sorted(unknown))}; "
                            f"known: {', '.join(_LISTS)}, coa")
    for key in _LISTS:
        if key in data:
            _check_templates(key, data[key])
    if "coa" in data and not isinstance(data["coa"], bool):
        raise OverrideError("coa must be true or false")
    return data


def spec_for(vendor: str, override: Mapping[str, Any] | None = None) -> VendorSpec:
    """The vendor's row with the NAS's override laid over it."""
    spec = VENDORS.get(vendor, VENDORS["generic"])
    if not override:
        return spec
    changes: dict[str, Any] = {key: tuple(tuple(pair) for pair in override[key])
                               for key in _LISTS if key in override}
    if "coa" in override:
        changes["coa"] = override["coa"]
    return replace(spec, **changes)


def nas_spec(nas) -> VendorSpec:
    """A NAS row's vendor spec with its override; an override that no longer
    parses (edited by hand in the database) is logged and left out, so the
    NAS keeps its vendor's words rather than losing every attribute."""
    try:
        return spec_for(nas.vendor, parse_override(nas.vendor_override))
    except OverrideError as error:
        log.error("nas.bad_override nas=%s error=%s", nas.name, error)
        return spec_for(nas.vendor)


def _typed(name: str, text: str):
    kind = dictionary().attributes[name].type
    return int(text) if kind in ("integer", "short", "byte", "integer64") else text


def _fill(templates: Templates, values: Mapping[str, Any]) -> list[tuple[str, object]]:
    return [(name, _typed(name, template.format(**values))) for name, template in templates]


def _values(down_kbps: int, up_kbps: int, redirect_url: str = "") -> dict[str, Any]:
    return dict(down_kbps=down_kbps, up_kbps=up_kbps, down_bps=down_kbps * 1000,
                up_bps=up_kbps * 1000, redirect_url=redirect_url or "http://portal.invalid/")


def rate_attributes(vendor: str, rate: Rate, override=None) -> list[tuple[str, object]]:
    """The (name, value) pairs that set ``rate`` on a NAS of ``vendor``."""
    return _fill(spec_for(vendor, override).rate, _values(rate.down_kbps, rate.up_kbps))


def access_possible(spec: VendorSpec, profile: Profile) -> bool:
    """Whether a NAS of this kind can give the profile a session at all: a
    portal state on a vendor without a portal gives none (never full)."""
    if profile.access == FULL:
        return True
    return profile.access == REDIRECT and spec.portal


def accept_attributes(spec: VendorSpec, profile: Profile,
                      redirect_url: str = "") -> list[tuple[str, object]]:
    """Access-Accept attributes for a profile that gives a session."""
    values = _values(profile.down_kbps, profile.up_kbps, redirect_url)
    pairs = _fill(spec.rate, values)
    if profile.access == REDIRECT:
        pairs += _fill(spec.redirect_accept, values)
    return pairs


def coa_plan(spec: VendorSpec, desired: Profile, applied_key: str | None,
             redirect_url: str = "") -> tuple[str, list[tuple[str, object]]]:
    """("coa", attributes) that move a live session from ``applied_key`` to
    ``desired``, or ("disconnect", []) when only a reconnect can."""
    if not spec.coa or not access_possible(spec, desired):
        return "disconnect", []
    applied = parse_key(applied_key)
    was_redirected = applied is not None and applied[0] == REDIRECT
    values = _values(desired.down_kbps, desired.up_kbps, redirect_url)
    pairs = _fill(spec.rate, values)
    if desired.access == REDIRECT and not was_redirected:
        if not spec.redirect_coa:
            return "disconnect", []
        pairs += _fill(spec.redirect_coa, values)
    elif desired.access == FULL and (was_redirected or applied is None and spec.portal):
        # Out of the portal. An unknown applied state (the NAS did not echo
        # Class) may be the portal too, so it is left as well where CoA can.
        if spec.unredirect_coa:
            pairs += _fill(spec.unredirect_coa, values)
        elif was_redirected:
            return "disconnect", []
    if not pairs:
        return "disconnect", []
    return "coa", pairs


__all__ = ["FULL", "NONE", "REDIRECT", "Rate", "VendorSpec", "VENDORS", "OverrideError",
           "parse_override", "spec_for", "nas_spec", "rate_attributes", "accept_attributes", "coa_plan",
           "access_possible"]
