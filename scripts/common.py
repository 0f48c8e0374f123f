"""Helpers shared by the CLI commands: context, errors, output."""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
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


def get_context(click_ctx: click.Context | None = None, *, schema: bool = True) -> Context:
    """The settings, engine and sessions; with ``schema``, the database is
    reachable and its schema current, or the command stops with a sentence
    saying what to do (``abonent db upgrade``)."""
    click_ctx = click_ctx or click.get_current_context()
    root = click_ctx.find_root()
    if root.obj is None:
        root.obj = {}
    if "context" not in root.obj:
        try:
            root.obj["context"] = open_context(root.obj.get("config_path"))
        except SettingsError as error:
            raise CliError(str(error)) from None
        root.call_on_close(root.obj["context"].dispose)
        # Notices queued by this process (a payment's) use the operator's language.
        from rating import notify
        notify.DEFAULT_LANGUAGE = root.obj["context"].settings.get("notify", "default_language")
    context = root.obj["context"]
    if schema and not root.obj.get("schema_checked"):
        from config.migrate import SchemaState, schema_state
        state = schema_state(context.engine)
        where = context.engine.url.render_as_string(hide_password=True)
        if isinstance(state, Exception):
            raise CliError(f"cannot reach the database at {where}: {describe_db_error(state)}")
        if state is SchemaState.EMPTY:
            raise CliError(f"the database at {where} has no schema yet; "
                           f"run `abonent db upgrade` first")
        if state is SchemaState.BEHIND:
            raise CliError(f"the database at {where} has an older schema; "
                           f"run `abonent db upgrade` first")
        root.obj["schema_checked"] = True
    return context


def describe_db_error(error: BaseException) -> str:
    """The driver's reason, first line only (no SQL, no traceback)."""
    reason = str(getattr(error, "orig", None) or error).strip().splitlines()
    return (reason[0] if reason else type(error).__name__).rstrip(".")


def actor() -> str:
    """Who is acting, for the ledger and the audit log: ``--actor`` (or
    ``$ABONENT_ACTOR``), else the operating-system user, as ``admin:NAME``."""
    root = click.get_current_context().find_root()
    name = (root.obj or {}).get("actor") or _os_user()
    return name if ":" in name else f"admin:{name}"


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@contextlib.contextmanager
def transaction():
    """One transaction per command; a domain error becomes exit 2 and
    nothing of the command is kept."""
    from sqlalchemy.exc import DBAPIError, IntegrityError

    from rating import ledger
    from rating.validate import DomainError
    ctx = get_context()
    with ctx.Session() as session:
        try:
            yield session
            session.commit()
        except (DomainError, ledger.LedgerError) as error:
            session.rollback()
            raise CliError(str(error)) from None
        except IntegrityError as error:
            session.rollback()
            raise CliError(f"the change conflicts with existing data "
                           f"({describe_db_error(error)})") from None
        except DBAPIError as error:
            session.rollback()
            raise CliError(f"the database refused the change: {describe_db_error(error)}") from None


# -- lists -------------------------------------------------------------------

def page_options(default_limit: int = 1000):
    """``--limit``/``--offset`` for a list command."""
    def decorate(function):
        function = click.option("--offset", type=click.IntRange(0), default=0,
                                help="Skip this many rows first.")(function)
        return click.option("--limit", type=click.IntRange(1, 100000), default=default_limit,
                            show_default=True, help="Show at most this many rows.")(function)
    return decorate


def fetch_page(session, query, limit: int, offset: int, scalars: bool = True) -> list:
    """Rows ``offset .. offset+limit`` of an ordered query; when there are
    more, says so on stderr (the output itself stays clean for pipes)."""
    query = query.limit(limit + 1).offset(offset)
    rows = list(session.scalars(query) if scalars else session.execute(query))
    return trim_page(rows, limit, offset)


def trim_page(rows: list, limit: int, offset: int) -> list:
    """``rows`` fetched with ``limit + 1``: the page, and a note on stderr
    when the extra row shows there is more."""
    if len(rows) > limit:
        rows = rows[:limit]
        click.echo(f"abonent: showing rows {offset + 1}-{offset + limit}; more with "
                   f"--offset {offset + limit}", err=True)
    return rows


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
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "-"
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


class Progress:
    """A progress bar on stderr when it is a terminal (and not --json)."""

    def __init__(self, total: int, label: str, as_json: bool):
        self.bar = None
        if total and sys.stderr.isatty() and not as_json:
            self.bar = click.progressbar(length=total, label=label, file=sys.stderr)
            self.bar.__enter__()

    def update(self, count: int) -> None:
        if self.bar is not None:
            self.bar.update(count)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
