"""``abonent serve NAME``: one long-running process per subcommand."""

from __future__ import annotations

import click

from scripts.cli import LazyGroup

SERVERS = {
    "radius": ("scripts.serve_radius:radius", "RADIUS auth + accounting server."),
    "cabinet": ("scripts.serve_cabinet:cabinet", "The subscriber cabinet (web)."),
    "collector": ("scripts.serve_collector:collector", "NetFlow v5/v9/IPFIX collector."),
    "scheduler": ("scripts.serve_scheduler:scheduler", "Scheduled jobs: fees, policies."),
    "enforcer": ("scripts.coa_cli:enforcer", "CoA/Disconnect worker for profile changes."),
}


@click.group(cls=LazyGroup, lazy=SERVERS)
def serve():
    """Run a server process (RADIUS, cabinet, collector, ...)."""
