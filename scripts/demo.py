"""``abonent demo``: seed demo data and run the RADIUS server and the cabinet
on the embedded SQLite database, with nothing else installed."""

from __future__ import annotations

import datetime as dt

import errno
import logging
import signal
import socket
import threading
import time

import click
from sqlalchemy import select, update

from aaa.models import Nas, Service
from config.migrate import upgrade
from aaa import enforcement
from rating import accounts as acc
from rating import jobs, options
from rating.models import Account
from scripts.common import CliError, get_context

log = logging.getLogger(__name__)

DEMO = dict(number="100001", login="demo", password="demo-pass", nas_secret="testing123",
            ip="10.10.0.2")


def seed(session) -> bool:
    """Create the demo tariff, account, logins and NAS; False if already there."""
    if session.scalar(select(Account.id).where(Account.number == DEMO["number"])) is not None:
        return False
    acc.create_tariff(session, name="Home 100", fee="600.00", fee_period="daily",
                      rate_down_kbps=100_000, rate_up_kbps=50_000, negative_rate_kbps=1_000,
                      actor="demo")
    acc.create_tariff(session, name="Home 300", fee="900.00", fee_period="daily",
                      rate_down_kbps=300_000, rate_up_kbps=150_000, negative_rate_kbps=1_000,
                      actor="demo")
    account = acc.create_account(session, number=DEMO["number"], name="Demo Subscriber",
                                 tariff="Home 100", email="demo@example.net",
                                 phone="+7 900 000-00-01", credit_limit="100", actor="demo")
    acc.create_cabinet_user(session, account, login=DEMO["login"], password=DEMO["password"],
                            email="demo@example.net", actor="demo")
    acc.add_payment(session, account, "500.00", external_id="demo-welcome", provider="demo",
                    actor="demo", memo="Welcome payment")
    session.add(Service(account_id=account.id, kind="pppoe", login=DEMO["login"],
                        password=DEMO["password"], static_ipv4=DEMO["ip"]))
    if session.scalar(select(Nas.id).where(Nas.address == "127.0.0.1")) is None:
        session.add(Nas(name="demo-nas", address="127.0.0.1", secret=DEMO["nas_secret"],
                        vendor="mikrotik"))
    options.create_option_type(session, code="turbo", name="Turbo ×2", kind="turbo",
                               price="50.00", duration_hours=24, rate_multiplier=2,
                               actor="demo")
    # The operator's news on the overview (rating.banners), for a week. A
    # banner is the operator's own text, in the operator's language.
    from config.db import utcnow
    from rating import banners
    banners.add(session, title="Плановые работы ночью",
                body="На этой неделе с 01:00 до 03:00 возможны перерывы в работе сети. "
                     "С вашей стороны ничего делать не нужно.",
                starts_at=utcnow(), ends_at=utcnow() + dt.timedelta(days=7), actor="demo")
    session.flush()
    return True


def _port_error(host: str, port: int, kind: str, what: str, option: str,
                error: OSError) -> CliError:
    reason = ("is already in use" if error.errno == errno.EADDRINUSE
              else f"cannot be opened ({error.strerror or error})")
    return CliError(f"port {port} ({what}, {kind}) on {host} {reason}; choose another "
                    f"with {option} PORT (0 picks a free one)")


def _check_ports(host: str, wanted: list[tuple[str, int, str, str]]) -> None:
    """One sentence naming the port and its option, before anything starts,
    instead of a traceback from deep inside a server. Probed without
    SO_REUSEPORT, so a port another program shares that way counts as
    taken too (the collector would otherwise quietly get half its flows)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for option, port, kind, what in wanted:
        if port == 0:
            continue
        with socket.socket(family, socket.SOCK_STREAM if kind == "tcp"
                           else socket.SOCK_DGRAM) as probe:
            if kind == "tcp":
                # As the cabinet's server does: a port in TIME_WAIT is free.
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as error:
                raise _port_error(host, port, kind, what, option, error) from None


def _background(stop: threading.Event, every_s: float, work) -> threading.Thread:
    def loop():
        while not stop.wait(every_s):
            try:
                work()
            except Exception:  # keep the demo alive; the log says what broke
                log.exception("demo.background-task-failed")
    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--cabinet-port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option("--auth-port", type=click.IntRange(0, 65535), default=1812, show_default=True)
@click.option("--acct-port", type=click.IntRange(0, 65535), default=1813, show_default=True)
@click.option("--collector-port", type=click.IntRange(0, 65535), default=2055,
              show_default=True)
@click.option("--coa-port", type=click.IntRange(0, 65535), default=3799, show_default=True,
              help="Where the simulated BRAS listens for CoA.")
@click.option("--seconds", type=click.FloatRange(min=0), default=0,
              help="Stop after this many seconds (0: run until Ctrl-C).")
def demo(host, cabinet_port, auth_port, acct_port, collector_port, coa_port, seconds):
    """Seed demo data and run everything on SQLite: RADIUS, collector, cabinet,
    the enforcement worker and a simulated BRAS with the demo subscriber online."""
    from aaa.server import RadiusServer
    from cabinet.app import CabinetServer
    from collector.server import CollectorServer
    from scripts.nas_sim import NasSimulator

    ports = [("--cabinet-port", cabinet_port, "tcp", "the cabinet"),
             ("--auth-port", auth_port, "udp", "RADIUS authentication"),
             ("--acct-port", acct_port, "udp", "RADIUS accounting"),
             ("--collector-port", collector_port, "udp", "the NetFlow collector"),
             ("--coa-port", coa_port, "udp", "CoA to the simulated BRAS")]
    _check_ports(host, ports)
    ctx = get_context(schema=False)
    upgrade(ctx.engine)
    with ctx.Session() as session:
        created = seed(session)
        session.commit()
    started = []

    def start(component, option, port, kind, what):
        """Start one server; should its port be taken after all (a race
        with the check above), stop the others and name the port."""
        try:
            component.start()
        except OSError as error:
            for running in reversed(started):
                running.stop()
            raise _port_error(host, port, kind, what, option, error) from None
        started.append(component)

    radius = RadiusServer(ctx, host=host, auth_port=auth_port, acct_port=acct_port)
    try:
        cabinet = CabinetServer(ctx, host=host, port=cabinet_port)
    except OSError as error:
        raise _port_error(host, cabinet_port, "tcp", "the cabinet", "--cabinet-port",
                          error) from None
    # The demo pays through the built-in test bank (off in production).
    cabinet.app.config["TESTPAY_ENABLED"] = True
    # Reset links name the demo's own address (production needs
    # cabinet.public_url: never the request's Host header).
    if not cabinet.app.config["ABONENT_PUBLIC_URL"]:
        shown = f"[{host}]" if ":" in host else host
        cabinet.app.config["ABONENT_PUBLIC_URL"] = f"http://{shown}:{cabinet.port}"
    collector = CollectorServer(ctx, host=host, port=collector_port)
    start(radius, "--auth-port or --acct-port", f"{auth_port} or {acct_port}", "udp",
          "RADIUS")
    start(collector, "--collector-port", collector_port, "udp", "the NetFlow collector")
    start(cabinet, "--cabinet-port", cabinet_port, "tcp", "the cabinet")
    sim = NasSimulator([(DEMO["login"], DEMO["password"])], secret=DEMO["nas_secret"],
                       radius_host=host, auth_port=radius.auth_port, acct_port=radius.acct_port,
                       coa_port=coa_port, collector=(host, collector.port), interim_s=10)
    start(sim.responder, "--coa-port", coa_port, "udp", "CoA to the simulated BRAS")
    with ctx.Session() as session:
        # CoA goes wherever the simulated BRAS listens.
        session.execute(update(Nas).where(Nas.address == "127.0.0.1")
                        .values(coa_port=sim.responder.port))
        session.commit()
    sim.start(responder_started=True)
    background = threading.Event()
    timezone = ctx.settings.get("", "timezone")
    # The enforcer's own loop (per-NAS lanes, retries), as `serve enforcer` runs it.
    enforcer = enforcement.Enforcer(ctx.Session, enforcement.Settings.from_settings(ctx.settings),
                                    threads=8, engine=ctx.engine)
    threading.Thread(target=enforcer.run, name="enforcer", daemon=True).start()
    _background(background, 5.0, lambda: jobs.run_periodic(ctx.Session))
    _background(background, 60.0, lambda: jobs.run_traffic(ctx.engine, ctx.Session, timezone))
    cabinet_url = f"http://{host}:{cabinet.port}/"
    click.echo("abonent demo is running" + (" (demo data created)" if created else ""))
    click.echo(f"  database : {ctx.engine.url.render_as_string(hide_password=True)}")
    click.echo(f"  cabinet  : {cabinet_url}  login: {DEMO['login']}  password: {DEMO['password']}")
    click.echo(f"  radius   : {host} auth {radius.auth_port}, "
               f"acct {radius.acct_port}, NAS secret "
               f"{DEMO['nas_secret']}, PPPoE login {DEMO['login']} / {DEMO['password']}")
    click.echo(f"  bras     : simulated, {len(sim.sessions)} session(s) online, NetFlow to "
               f"{host}:{collector.port}, CoA on {sim.responder.port}")
    click.echo(f"  try      : echo 'User-Name={DEMO['login']},User-Password={DEMO['password']},"
               f"Message-Authenticator=0x00' "
               f"| radclient -x {host}:{radius.auth_port} auth "
               f"{DEMO['nas_secret']}")
    click.echo("Press Ctrl-C to stop.", err=False)
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    deadline = time.monotonic() + seconds if seconds else None
    try:
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            stop.wait(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        background.set()
        enforcer.stop(wait=False)
        sim.stop()
        cabinet.stop()
        collector.stop()
        radius.stop()
        click.echo("abonent demo stopped")
