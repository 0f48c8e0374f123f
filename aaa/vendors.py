"""How each NAS vendor wants to be told a subscriber's speed.

A vendor is a row in ``VENDORS``: a list of (attribute, format) pairs, the
format filled from a ``Rate``. Directions are the hard part, so every row
says which way its words point:

- MikroTik ``Mikrotik-Rate-Limit`` is "rx/tx" from the router's interface:
  rx = what the router receives from the subscriber = upload. Units k = kbit/s.
- Cisco ISG parameterised QoS: ``qos-policy-in`` polices what comes in from
  the subscriber (upload), ``qos-policy-out`` shapes what goes out (download);
  bit/s.
- Juniper E-series/MX (ERX): ingress = from the subscriber (upload), egress =
  towards it (download); the values name policies configured on the router.
- accel-ppp's shaper reads ``Filter-Id`` as "down/up" in kbit/s.
- Huawei ``Input`` = from the subscriber (upload), ``Output`` = towards it
  (download); bit/s.
"""

from __future__ import annotations

from dataclasses import dataclass


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


# vendor -> [(attribute name, format over Rate's fields, type)]
VENDORS: dict[str, list[tuple[str, str, type]]] = {
    "generic": [],
    "mikrotik": [("Mikrotik-Rate-Limit", "{up_kbps}k/{down_kbps}k", str)],
    "cisco": [
        ("Cisco-AVPair", "ip:qos-policy-in=add-class(sub,(class-default),police({up_bps}))", str),
        ("Cisco-AVPair", "ip:qos-policy-out=add-class(sub,(class-default),shape({down_bps}))",
         str),
    ],
    "juniper": [
        ("ERX-Ingress-Policy-Name", "rate-{up_kbps}k", str),
        ("ERX-Egress-Policy-Name", "rate-{down_kbps}k", str),
    ],
    "accel-ppp": [("Filter-Id", "{down_kbps}/{up_kbps}", str)],
    "huawei": [
        ("Huawei-Input-Average-Rate", "{up_bps}", int),
        ("Huawei-Output-Average-Rate", "{down_bps}", int),
    ],
}


def rate_attributes(vendor: str, rate: Rate) -> list[tuple[str, object]]:
    """The (name, value) pairs that set ``rate`` on a NAS of ``vendor``."""
    rows = VENDORS.get(vendor, VENDORS["generic"])
    values = dict(down_kbps=rate.down_kbps, up_kbps=rate.up_kbps,
                  down_bps=rate.down_bps, up_bps=rate.up_bps)
    return [(name, kind(template.format(**values))) for name, template, kind in rows]
