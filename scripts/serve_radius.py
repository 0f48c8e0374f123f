"""``abonent serve radius``: RADIUS authentication and accounting over UDP."""

from __future__ import annotations

import logging
import signal

import click

from scripts.common import CliError, get_context


@click.command()
@click.option("--host", default=None, help="Address to listen on (default: settings radius.host).")
@click.option("--auth-port", default=None, type=click.IntRange(0, 65535),
              help="Authentication UDP port (default: settings radius.auth_port).")
@click.option("--acct-port", default=None, type=click.IntRange(0, 65535),
              help="Accounting UDP port (default: settings radius.acct_port).")
def radius(host, auth_port, acct_port):
    """Serve RADIUS Access-Request and Accounting-Request for the NAS fleet."""
    from aaa.server import RadiusServer, tune_process

    ctx = get_context()
    logging.basicConfig(level=ctx.settings.get("", "log_level"),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    tune_process()
    server = RadiusServer(ctx, host=host, auth_port=auth_port, acct_port=acct_port)
    try:
        server.start()
    except OSError as error:
        raise CliError(f"cannot listen on {server.host}: {error.strerror or error}") from None
    click.echo(f"radius: auth on {server.host}:{server.auth_port}, "
               f"accounting on {server.host}:{server.acct_port}", err=True)
    done = []
    signal.signal(signal.SIGTERM, lambda *_: done.append(True))
    try:
        while not done:
            signal.pause() if hasattr(signal, "pause") else None
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
