"""Which exporters may send flows, and the sampling rate forced on some of them.

Settings ``collector.exporters`` (addresses or prefixes; empty: anyone) and
``collector.sampling`` (address or prefix -> 1-in-N rate). Datagrams from an
exporter outside the list are dropped before anything else looks at them:
no replay key, no template, no sequence number, no flow. A forced rate
replaces what the exporter's v5 header, v9/IPFIX options or records say
(some routers report no rate, or a wrong one). The most specific prefix wins.

A decision is made once per exporter address and kept in a bounded dict, so
the receive path costs one dict lookup per datagram.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Iterable, Mapping

log = logging.getLogger("abonent.collector")

MAX_DECISIONS = 65536
MAX_LOGGED = 1024


def parse_network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """An address or a prefix (host bits allowed); ValueError with the text named."""
    try:
        return ipaddress.ip_network(str(text).strip(), strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address or prefix") from None


def _address(exporter) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(str(exporter).split("%", 1)[0])
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        return address.ipv4_mapped      # an IPv4 exporter on a dual-stack socket
    return address


class ExporterPolicy:
    def __init__(self, allowed: Iterable[str] = (), sampling: Mapping[str, int] | None = None):
        self.allowed = [parse_network(text) for text in allowed]
        self.sampling = sorted(((parse_network(text), int(rate))
                                for text, rate in (sampling or {}).items()),
                               key=lambda item: item[0].prefixlen, reverse=True)
        for network, rate in self.sampling:
            if rate < 1:
                raise ValueError(f"sampling rate of {network} must be 1 or more, not {rate}")
        # Nothing to decide: every exporter is allowed and keeps its own rate.
        self.open = not self.allowed and not self.sampling
        self.decisions: dict = {}       # exporter -> allowed
        self.forced: dict = {}          # exporter -> rate (only those with one)
        self._logged: set = set()

    @classmethod
    def from_settings(cls, settings) -> "ExporterPolicy":
        return cls(settings.get("collector", "exporters"), settings.get("collector", "sampling"))

    def trim(self) -> None:
        """Called between batches: forget decisions beyond a bound (spoofed sources)."""
        if len(self.decisions) > MAX_DECISIONS:
            self.decisions.clear()
            self.forced.clear()

    def decide(self, exporter) -> bool:
        """Whether ``exporter`` may send; records its forced rate in ``forced``."""
        address = _address(exporter)
        allowed = not self.allowed or (address is not None and any(
            address in network for network in self.allowed if network.version == address.version))
        if allowed and address is not None:
            for network, rate in self.sampling:
                if network.version == address.version and address in network:
                    self.forced[exporter] = rate
                    break
        self.decisions[exporter] = allowed
        if not allowed and len(self._logged) < MAX_LOGGED and exporter not in self._logged:
            self._logged.add(exporter)
            log.warning("collector: datagrams from exporter %s dropped: not in "
                        "collector.exporters", exporter)
        return allowed
