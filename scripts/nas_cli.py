"""NAS commands: nas (clients of the RADIUS server, CoA targets)."""

from __future__ import annotations

import copy
import datetime as dt
import json
import re

import click
import netaddr
from sqlalchemy import func, select, update

from aaa.models import Nas
from rating import oplog
from scripts.common import (CliError, actor, emit_json, emit_rows, fetch_page, json_option,
                            page_options, transaction)

VENDORS = ("generic", "mikrotik", "cisco", "juniper", "accel-ppp", "huawei", "sip", "cisco-voip")


# -- nas ---------------------------------------------------------------------

def nas_view(n: Nas) -> dict:
    return dict(id=n.id, name=n.name, address=n.address, vendor=n.vendor, coa_port=n.coa_port,
                require_message_authenticator=n.require_message_authenticator,
                limit_proxy_state=n.limit_proxy_state, vendor_override=n.vendor_override,
                previous_secret_until=n.previous_secret_until)


def _override(text: str | None) -> dict:
    from aaa.vendors import OverrideError, parse_override
    try:
        return parse_override(text)
    except OverrideError as error:
        raise CliError(f"--override: {error}") from None


def _address(address: str) -> str:
    try:
        network = netaddr.IPNetwork(address.strip())
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise CliError(f"{address!r} is not an IP address or prefix") from None
    if network.ip != network.network:
        raise CliError(f"{address} has host bits set; did you mean {network.cidr}?")
    return str(network.ip) if network.size == 1 else str(network.cidr)


def _secret(secret: str) -> str:
    if not secret or len(secret) > 128 or not secret.isprintable() or secret != secret.strip():
        raise CliError("the secret must be 1-128 printable characters, "
                       "with no spaces at either end")
    return secret


_GRACE = re.compile(r"^(\d{1,6})([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _grace(text: str) -> dt.timedelta:
    match = _GRACE.match((text or "").strip())
    if not match:
        raise CliError(f"--grace must be a duration like 30m, 1h or 2d, not {text!r}")
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if seconds > 30 * 86400:
        raise CliError("--grace must be at most 30 days")
    return dt.timedelta(seconds=seconds)


def _find(session, name: str) -> Nas:
    found = session.scalar(select(Nas).where(Nas.name == name))
    if found is None:
        raise CliError(f"no NAS {name!r}")
    return found


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
    canonical = _address(address)
    _secret(secret)
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


@nas.command("edit")
@click.argument("name")
@click.option("--address", help="New source address or prefix.")
@click.option("--vendor", type=click.Choice(VENDORS))
@click.option("--coa-port", type=click.IntRange(1, 65535))
@click.option("--secret", help="New shared secret.")
@click.option("--grace", default="0s", show_default=True,
              help="With --secret: keep accepting the previous secret this long (30m, 1h, "
                   "2d) while the BRAS is reconfigured.")
@click.option("--override", "override_text", metavar="JSON",
              help="Replace the vendor override ('{}' removes it).")
@json_option
def nas_edit(name, address, vendor, coa_port, secret, grace, override_text, as_json):
    """Change a NAS: address, vendor, CoA port, override, or rotate its secret."""
    from config.db import utcnow
    period = _grace(grace)
    if period and secret is None:
        raise CliError("--grace goes with --secret")
    override = _override(override_text) if override_text is not None else None
    canonical = _address(address) if address is not None else None
    if secret is not None:
        _secret(secret)
    if all(v is None for v in (address, vendor, coa_port, secret, override_text)):
        raise CliError("nothing to change: give --address, --vendor, --coa-port, --secret "
                       "or --override")
    with transaction() as session:
        found = _find(session, name)
        changes = {}
        if canonical is not None and canonical != found.address:
            if session.scalar(select(Nas.id).where(Nas.address == canonical,
                                                   Nas.id != found.id)) is not None:
                raise CliError(f"a NAS with address {canonical} already exists")
            changes["address"] = f"{found.address} -> {canonical}"
            found.address = canonical
        if vendor is not None and vendor != found.vendor:
            changes["vendor"] = f"{found.vendor} -> {vendor}"
            found.vendor = vendor
        if coa_port is not None and coa_port != found.coa_port:
            changes["coa_port"] = f"{found.coa_port} -> {coa_port}"
            found.coa_port = coa_port
        if override_text is not None:
            changes["vendor_override"] = json.dumps(override or None)
            found.vendor_override = override or None
        if secret is not None:
            if secret == found.secret:
                raise CliError("the new secret is the current one")
            if period:
                found.previous_secret = found.secret
                found.previous_secret_until = utcnow() + period
            else:
                found.previous_secret = found.previous_secret_until = None
            found.secret = secret
            # Never the secret itself: only that it changed, and the grace.
            changes["secret"] = "(changed)"
            changes["grace_until"] = (found.previous_secret_until.isoformat()
                                      if period else None)
        if not changes:
            raise CliError("nothing changes: the NAS already has these values")
        oplog.record(session, account_id=None, actor=actor(), action="nas.edit", name=name,
                     **changes)
        view = nas_view(found)
    if as_json:
        emit_json(view)
        return
    click.echo(f"NAS {name} changed: {', '.join(changes)}")
    if secret is not None and period:
        click.echo(f"the previous secret is accepted until "
                   f"{view['previous_secret_until']:%Y-%m-%d %H:%M:%S} UTC")


# "nas set" came before "nas edit" and is in operators' scripts: the same
# command under its old name, left out of --help.
_set = copy.copy(nas_edit)
_set.hidden = True
nas.add_command(_set, "set")


@nas.command("remove")
@click.argument("name")
@json_option
def nas_remove(name, as_json):
    """Remove a NAS that has no sessions (a NAS with history stays for its
    records; change its address or secret instead)."""
    from aaa.models import EnforcementJob, Session as RadiusSession, SessionArchive
    with transaction() as session:
        found = _find(session, name)
        live = session.scalar(select(func.count()).select_from(RadiusSession).where(
            RadiusSession.nas_id == found.id, RadiusSession.stopped_at.is_(None)))
        if live:
            raise CliError(f"NAS {name} has {live} live session(s); it cannot be removed")
        # Archived sessions (aaa.archive) are history too.
        history = sum(session.scalar(select(func.count()).select_from(table).where(
            table.nas_id == found.id)) for table in (RadiusSession, SessionArchive))
        if history:
            raise CliError(f"NAS {name} has {history} session(s) in the history that refer "
                           f"to it; it cannot be removed")
        session.execute(update(EnforcementJob).where(EnforcementJob.nas_id == found.id)
                        .values(nas_id=None))
        session.delete(found)
        oplog.record(session, account_id=None, actor=actor(), action="nas.remove", name=name,
                     address=found.address)
    emit_json(dict(name=name, removed=True)) if as_json else click.echo(f"NAS {name} removed")


@nas.command("list")
@page_options()
@json_option
def nas_list(limit, offset, as_json):
    """List NAS clients (secrets are not shown)."""
    with transaction() as session:
        rows = [nas_view(n) for n in fetch_page(session, select(Nas).order_by(Nas.name),
                                                 limit, offset)]
    emit_rows(rows, as_json, ["name", "address", "vendor", "coa_port",
                              "require_message_authenticator", "previous_secret_until"])
