"""``abonent serve cabinet``: the subscriber cabinet over HTTP.

A threaded werkzeug server, fine behind nginx for a small operator; a big
one runs ``cabinet.wsgi`` under gunicorn (contrib/) instead.
"""

from __future__ import annotations

import logging

import click

from config.settings import SettingsError
from scripts.common import CliError, get_context


@click.command()
@click.option("--host", default=None, help="Address to listen on (default: settings cabinet.host).")
@click.option("--port", default=None, type=click.IntRange(0, 65535),
              help="TCP port (default: settings cabinet.port).")
def cabinet(host, port):
    """Serve the subscriber cabinet (web pages for subscribers)."""
    from cabinet.app import CabinetServer, startup_warnings

    ctx = get_context()
    host = host or ctx.settings.get("cabinet", "host")
    port = ctx.settings.get("cabinet", "port") if port is None else port
    logging.basicConfig(level=ctx.settings.get("", "log_level"),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        server = CabinetServer(ctx, host=host, port=port)
    except OSError as error:
        raise CliError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    except SettingsError as error:
        raise CliError(str(error)) from None
    for warning in startup_warnings(ctx.settings):
        click.echo(f"cabinet: warning: {warning}", err=True)
    click.echo(f"cabinet: listening on {server.url}", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
