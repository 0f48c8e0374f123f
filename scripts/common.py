"""Helpers shared by the CLI commands: context, errors, output."""

from __future__ import annotations

import datetime as dt
import json
import sys
from decimal import Decimal
from typing import Any, Iterable

import click

from config.context import Context, open_context
from config.settings import SettingsError


class CliError(click.ClickException):
    """One sentence on stderr and exit 2 (bad input); nothing was changed."""

    exit_code = 2

    def show(self, file=None):
        click.echo(f"abonent: {self.format_message()}", err=True)


def get_context(click_ctx: click.Context | None = None) -> Context:
    click_ctx = click_ctx or click.get_current_context()
    root = click_ctx.find_root()
    if "context" not in root.obj:
        try:
            root.obj["context"] = open_context(root.obj.get("config_path"))
        except SettingsError as error:
            raise CliError(str(error)) from None
        root.call_on_close(root.obj["context"].dispose)
    return root.obj["context"]


def jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.replace(microsecond=0).isoformat() + "Z"
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def emit_json(value: Any) -> None:
    json.dump(jsonable(value), sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")


def emit_table(rows: Iterable[dict], columns: list[str]) -> None:
    rows = [{c: _cell(r.get(c)) for c in columns} for r in rows]
    widths = {c: max([len(c)] + [len(r[c]) for r in rows]) for c in columns}
    click.echo("  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip())
    for r in rows:
        click.echo("  ".join(r[c].ljust(widths[c]) for c in columns).rstrip())


def emit_rows(rows: list[dict], as_json: bool, columns: list[str]) -> None:
    """A read command's output: JSON, or a table of ``columns``."""
    if as_json:
        emit_json(rows)
    else:
        emit_table(rows, columns)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    value = jsonable(value)
    return str(value)


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON (snake_case keys).")


def supervise(pool, done, name: str) -> None:
    """Run a config.workers pool until ``done`` (SIGTERM) or Ctrl-C, then
    stop it; exit 1 if its workers kept dying."""
    healthy = True
    try:
        healthy = pool.supervise(done)
    except KeyboardInterrupt:
        pass
    finally:
        pool.stop()
    if not healthy:
        click.echo(f"{name}: workers keep dying; stopped (see the log)", err=True)
        raise SystemExit(1)
