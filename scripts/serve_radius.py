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
@click.option("--metrics-port", default=None, type=click.IntRange(0, 65535),
              help="Serve Prometheus metrics on this TCP port, summed over the workers "
                   "(default: settings radius.metrics_port; 0: off).")
def radius(host, auth_port, acct_port, workers, metrics_port):
    """Serve RADIUS Access-Request and Accounting-Request for the NAS fleet."""
    from aaa.server import check_settings
    from aaa.workers import default_count

    ctx = get_context()
    logging.basicConfig(level=ctx.settings.get("", "log_level"),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        check_settings(ctx.settings)
        count = workers or default_count(ctx.settings)
    except ValueError as error:
        raise CliError(str(error)) from None
    if metrics_port is None:
        metrics_port = ctx.settings.get("radius", "metrics_port")
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
    if metrics_port:
        try:
            _serve_metrics(metrics_port, server.host, server.snapshot)
        except OSError as error:
            server.stop()
            raise CliError(f"cannot serve metrics on {server.host}:{metrics_port}: "
                           f"{error.strerror or error}") from None
    workers = f"{count} workers, " if count > 1 else ""
    metrics = f", metrics on tcp {server.host}:{metrics_port}" if metrics_port else ""
    click.echo(f"radius: {workers}auth on {server.host}:{server.auth_port}, "
               f"accounting on {server.host}:{server.acct_port}{metrics}", err=True)
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


def _serve_metrics(port: int, host: str, snapshot) -> None:
    """Prometheus text on http://host:port/metrics, from ``snapshot()``
    (one server, or the sum over the workers)."""
    from prometheus_client import REGISTRY, start_http_server

    from aaa.metrics import RadiusMetrics

    REGISTRY.register(RadiusMetrics(snapshot))
    start_http_server(port, addr=host)
