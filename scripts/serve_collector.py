"""``abonent serve collector``: NetFlow v5/v9/IPFIX over UDP into traffic rollups."""

from __future__ import annotations

import logging
import signal
import threading
import tomllib

import click

from scripts.common import CliError, get_context, supervise


def load_classes(path: str | None) -> dict[str, list[str]] | None:
    """A TOML file ``[classes]`` name = ["prefix", ...]; checked before listening."""
    if not path:
        return None
    from collector.attribute import TrafficClasses

    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise CliError(f"cannot read traffic classes from {path}: {error}") from None
    classes = document.get("classes", document)
    if not isinstance(classes, dict) or not all(
            isinstance(v, list) and all(isinstance(p, str) for p in v) for v in classes.values()):
        raise CliError(f"{path}: [classes] must map a class name to a list of prefixes")
    try:
        TrafficClasses(classes)
    except ValueError as error:
        raise CliError(f"{path}: {error}") from None
    return classes


@click.command()
@click.option("--host", default=None, help="Address to listen on (default: settings collector.host).")
@click.option("--port", default=None, type=click.IntRange(0, 65535),
              help="UDP port (default: settings collector.port).")
@click.option("--classes", "classes_path", type=click.Path(dir_okay=False),
              help="TOML file with [classes] name = [prefixes] (default: settings "
                   "collector.classes, else all 'internet').")
@click.option("--flush-seconds", default=None, type=click.FloatRange(0.1, 3600),
              help="How often sums are written to the database (default: settings "
                   "collector.flush_seconds, 15). A kill -9 loses at most this long.")
@click.option("--metrics-port", default=0, type=click.IntRange(0, 65535),
              help="Serve Prometheus metrics on this TCP port (0: off).")
@click.option("--workers", default=None, type=click.IntRange(0, 256),
              help="Collector processes sharing the port (default: settings "
                   "collector.workers; 0: one per CPU on PostgreSQL, one on SQLite).")
def collector(host, port, classes_path, flush_seconds, metrics_port, workers):
    """Receive NetFlow v5/v9/IPFIX exports and roll traffic up per account."""
    from config.workers import count_for

    ctx = get_context()
    logging.basicConfig(level=ctx.settings.get("", "log_level"),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    classes = load_classes(classes_path or ctx.settings.get("collector", "classes") or None)
    try:
        count = workers or count_for(ctx.settings, "collector")
    except ValueError as error:
        raise CliError(str(error)) from None
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    if count == 1:
        _serve_in_process(ctx, host, port, classes, flush_seconds, metrics_port, done)
    else:
        _serve_workers(ctx, count, host, port, classes, flush_seconds, metrics_port, done)


def _serve_metrics(port: int, host: str, metrics) -> None:
    from prometheus_client import REGISTRY, start_http_server

    REGISTRY.register(metrics)
    start_http_server(port, addr=host)


def _serve_in_process(ctx, host, port, classes, flush_seconds, metrics_port, done) -> None:
    from collector.server import CollectorServer, PipelineMetrics

    server = CollectorServer(ctx, host=host, port=port, classes=classes,
                             flush_seconds=flush_seconds)
    try:
        server.start()
    except OSError as error:
        raise CliError(f"cannot listen on {server.host}:{server.port}: "
                       f"{error.strerror or error}") from None
    if metrics_port:
        _serve_metrics(metrics_port, server.host, PipelineMetrics(server.pipeline))
    click.echo(f"collector: listening on udp {server.host}:{server.port}", err=True)
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def _serve_workers(ctx, count, host, port, classes, flush_seconds, metrics_port, done) -> None:
    from collector.server import PipelineMetrics, serve_worker
    from config.workers import WorkerPool

    host = host or ctx.settings.get("collector", "host")
    port = ctx.settings.get("collector", "port") if port is None else port
    args = (ctx.settings, host, port, classes, flush_seconds, count)
    pool = WorkerPool(serve_worker, args, count, "collector",
                      rebind=lambda args, bound: (*args[:2], bound, *args[3:]))
    try:
        port = pool.start()
    except OSError as error:
        raise CliError(f"cannot listen on {host}:{port}: {error}") from None
    if metrics_port:
        # The workers' counters as their stats files hold them (written at
        # every flush): one scrape target for the whole collector.
        _serve_metrics(metrics_port, host, PipelineMetrics.from_files(ctx))
    click.echo(f"collector: {count} workers, listening on udp {host}:{port}", err=True)
    supervise(pool, done, "collector")
