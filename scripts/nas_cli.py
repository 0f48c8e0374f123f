"""NAS commands: nas (clients of the RADIUS server, CoA targets)."""

from __future__ import annotations

import click
import netaddr
from sqlalchemy import select

from aaa.models import Nas
from rating import oplog
from scripts.common import (CliError, actor, emit_json, emit_rows, json_option, transaction)

VENDORS = ("generic", "mikrotik", "cisco", "juniper", "accel-ppp", "huawei")


# -- nas ---------------------------------------------------------------------

def nas_view(n: Nas) -> dict:
    return dict(id=n.id, name=n.name, address=n.address, vendor=n.vendor, coa_port=n.coa_port,
                require_message_authenticator=n.require_message_authenticator,
                limit_proxy_state=n.limit_proxy_state, vendor_override=n.vendor_override)


def _override(text: str | None) -> dict:
    from aaa.vendors import OverrideError, parse_override
    try:
        return parse_override(text)
    except OverrideError as error:
        raise CliError(f"--override: {error}") from None


@click.group()
def nas():
    """NAS / BRAS clients."""


@nas.command("add")
@click.argument("name")
@click.option("--address", required=True, help="Source address or prefix, e.g. 10.0.0.1 or 10.0.0.0/24.")
@click.option("--secret", required=True, help="RADIUS shared secret.")
@click.option("--vendor", type=click.Choice(VENDORS), default="generic", show_default=True)
@click.option("--coa-port", type=click.IntRange(1, 65535), default=3799, show_default=True)
@click.option("--require-message-authenticator", type=click.Choice(["yes", "no", "auto"]),
              default="auto", show_default=True)
@click.option("--limit-proxy-state", type=click.Choice(["yes", "no", "auto"]), default="auto",
              show_default=True)
@click.option("--override", "override_text", metavar="JSON",
              help="Attributes laid over the vendor's table, e.g. "
                   "'{\"rate\": [[\"Filter-Id\", \"plan-{down_kbps}\"]], \"coa\": true}'.")
@json_option
def nas_add(name, address, secret, vendor, coa_port, require_message_authenticator,
            limit_proxy_state, override_text, as_json):
    """Add a NAS."""
    from rating import validate
    try:
        name = validate.name(name, "NAS name", maximum=64)
    except validate.DomainError as error:
        raise CliError(str(error)) from None
    override = _override(override_text)
    try:
        network = netaddr.IPNetwork(address)
    except (netaddr.AddrFormatError, ValueError):
        raise CliError(f"{address!r} is not an IP address or prefix") from None
    if network.ip != network.network:
        raise CliError(f"{address} has host bits set; did you mean {network.cidr}?")
    canonical = str(network.ip) if network.size == 1 else str(network.cidr)
    if not secret or len(secret) > 128:
        raise CliError("the secret must be 1-128 characters")
    with transaction() as session:
        if session.scalar(select(Nas.id).where(Nas.name == name)) is not None:
            raise CliError(f"NAS {name!r} already exists")
        if session.scalar(select(Nas.id).where(Nas.address == canonical)) is not None:
            raise CliError(f"a NAS with address {canonical} already exists")
        created = Nas(name=name, address=canonical, secret=secret, vendor=vendor,
                      coa_port=coa_port,
                      require_message_authenticator=require_message_authenticator,
                      limit_proxy_state=limit_proxy_state, vendor_override=override or None)
        session.add(created)
        session.flush()
        oplog.record(session, account_id=None, actor=actor(), action="nas.add", name=name,
                     address=canonical, vendor=vendor)
        view = nas_view(created)
    emit_json(view) if as_json else click.echo(f"NAS {name} ({canonical}) added")


@nas.command("set")
@click.argument("name")
@click.option("--vendor", type=click.Choice(VENDORS))
@click.option("--coa-port", type=click.IntRange(1, 65535))
@click.option("--override", "override_text", metavar="JSON",
              help="Replace the vendor override ('{}' removes it).")
@json_option
def nas_set(name, vendor, coa_port, override_text, as_json):
    """Change a NAS's vendor, CoA port or vendor override."""
    override = _override(override_text) if override_text is not None else None
    if vendor is None and coa_port is None and override_text is None:
        raise CliError("nothing to change: give --vendor, --coa-port or --override")
    with transaction() as session:
        found = session.scalar(select(Nas).where(Nas.name == name))
        if found is None:
            raise CliError(f"no NAS {name!r}")
        changes = {}
        if vendor is not None:
            found.vendor = changes["vendor"] = vendor
        if coa_port is not None:
            found.coa_port = changes["coa_port"] = coa_port
        if override_text is not None:
            found.vendor_override = changes["vendor_override"] = override or None
        oplog.record(session, account_id=None, actor=actor(), action="nas.set", name=name,
                     **changes)
        view = nas_view(found)
    emit_json(view) if as_json else click.echo(f"NAS {name} changed")


@nas.command("list")
@json_option
def nas_list(as_json):
    """List NAS clients (secrets are not shown)."""
    with transaction() as session:
        rows = [nas_view(n) for n in session.scalars(select(Nas).order_by(Nas.name))]
    emit_rows(rows, as_json, ["name", "address", "vendor", "coa_port",
                              "require_message_authenticator"])
