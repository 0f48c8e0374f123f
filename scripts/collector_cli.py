"""``abonent collector …``: look at running collectors."""

from __future__ import annotations

import click

from scripts.common import emit_json, emit_table, get_context, json_option


@click.group("collector")
def collector_group():
    """NetFlow collector: counters."""


@collector_group.command("stats")
@json_option
def stats(as_json):
    """Counters summed over every collector process writing to this data_dir."""
    from collector.server import read_stats

    ctx = get_context()
    document = read_stats(ctx)
    if as_json:
        emit_json(document)
        return
    emit_table([{"counter": k, "value": v} for k, v in sorted(document["counters"].items())],
               ["counter", "value"])
    click.echo(f"processes: {len(document['processes'])}")
