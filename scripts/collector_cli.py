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
    """Counters summed over every collector process writing to this data_dir,
    and per process: flows decoded, committed, pending (in memory), in the
    spool and lost (a killed process: what it held at its last stats)."""
    from collector.server import read_stats

    ctx = get_context()
    document = read_stats(ctx)
    if as_json:
        emit_json(document)
        return
    emit_table([{"counter": k, "value": v} for k, v in sorted(document["counters"].items())],
               ["counter", "value"])
    click.echo("")
    emit_table(document["processes"], ["pid", "state", "listen", "flows", "flows_committed",
                                       "flows_pending", "flows_in_spool", "flows_lost",
                                       "updated_at"])
    click.echo(f"processes: {len(document['processes'])}; spool files waiting: "
               f"{document['spool']['files']}")
