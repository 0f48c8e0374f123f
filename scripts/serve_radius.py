"""``abonent serve radius``: RADIUS authentication and accounting over UDP."""

from __future__ import annotations

import logging
import signal
import threading

import click

from scripts.common import CliError, get_context, supervise


@click.command()
@click.option("--host", default=None, help="Address to listen on (default: settings radius.host).")
@click.option("--auth-port", default=None, type=click.IntRange(0, 65535),
              help="Authentication UDP port (default: settings radius.auth_port).")
@click.option("--acct-port", default=None, type=click.IntRange(0, 65535),
              help="Accounting UDP port (default: settings radius.acct_port).")
@click.option("--workers", default=None, type=click.IntRange(0, 256),
              help="Server processes sharing the ports (default: settings radius.workers; "
                   "0: one per CPU on PostgreSQL, one on SQLite).")
def radius(host, auth_port, acct_port, workers):
    """Serve RADIUS Access-Request and Accounting-Request for the NAS fleet."""
    from aaa.workers import default_count

    ctx = get_context()
    logging.basicConfig(level=ctx.settings.get("", "log_level"),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        count = workers or default_count(ctx.settings)
    except ValueError as error:
        raise CliError(str(error)) from None
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    if count == 1:
        from aaa.server import RadiusServer, tune_process

        tune_process()
        server = RadiusServer(ctx, host=host, auth_port=auth_port, acct_port=acct_port,
                              freeze_heap=True)
    else:
        from aaa.workers import RadiusWorkers

        server = RadiusWorkers(ctx.settings, count, host=host, auth_port=auth_port,
                               acct_port=acct_port)
    try:
        server.start()
    except OSError as error:
        raise CliError(f"cannot listen on {server.host}: {error.strerror or error}") from None
    workers = f"{count} workers, " if count > 1 else ""
    click.echo(f"radius: {workers}auth on {server.host}:{server.auth_port}, "
               f"accounting on {server.host}:{server.acct_port}", err=True)
    if count > 1:
        supervise(server, done, "radius")
        return
    try:
        while not done.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
