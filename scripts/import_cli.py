"""``abonent import``: bring accounts, services, opening balances and
payments over from another billing (Ubilling, ABillS, a spreadsheet).

Columns and the mapping file: docs/import.md."""

from __future__ import annotations

import sys

import click

from scripts.common import CliError, actor, emit_json, get_context, json_option, transaction


def _kinds() -> dict:
    from aaa.importer import SERVICES
    from rating.importer import ACCOUNTS, BALANCES, PAYMENTS
    return {"accounts": ACCOUNTS, "services": SERVICES, "balances": BALANCES,
            "payments": PAYMENTS}


@click.group("import")
def import_group():
    """Import from another billing: accounts, services, balances, payments.

    Import accounts first, then services, balances and payments (they name
    accounts by number). Each file is checked whole first; see docs/import.md
    for the columns and the mapping files for Ubilling and ABillS exports."""


def _command(kind_name: str, summary: str, columns: str):
    @import_group.command(kind_name, help=f"{summary}\n\nColumns: {columns}.\n\n"
                          "Every row is checked before anything is written. A row refused "
                          "means nothing is imported unless --skip-bad is given; rows already "
                          "imported are left alone, so the same file can be run again.")
    @click.argument("path", metavar="FILE.csv", type=click.Path(dir_okay=False))
    @click.option("--mapping", type=click.Path(dir_okay=False),
                  help="TOML file mapping another billing's columns to ours "
                       "(contrib/import/ubilling.toml, contrib/import/abills.toml).")
    @click.option("--dry-run", is_flag=True,
                  help="Check every row and report the refused ones; write nothing.")
    @click.option("--skip-bad", is_flag=True,
                  help="Import the good rows and report the bad ones (default: a bad row "
                       "means nothing is imported).")
    @json_option
    def run(path, mapping, dry_run, skip_bad, as_json):
        _run(kind_name, path, mapping, dry_run, skip_bad, as_json)
    return run


def _run(kind_name, path, mapping_path, dry_run, skip_bad, as_json):
    from rating import importer
    from rating.validate import DomainError
    kinds = _kinds()
    kind = kinds[kind_name]
    context = get_context()
    timezone = context.settings.get("", "timezone")
    try:
        mapping = importer.load_mapping(mapping_path, kinds) if mapping_path else None
    except DomainError as error:
        raise CliError(str(error)) from None
    bar = {}

    def start(total):
        if sys.stderr.isatty() and not as_json:
            bar["bar"] = click.progressbar(length=total, label=f"importing {kind_name}",
                                           file=sys.stderr)
            bar["bar"].__enter__()

    def progress(count):
        if "bar" in bar:
            bar["bar"].update(count)

    try:
        with transaction() as session:
            report = importer.import_file(session, kind, path, mapping=mapping, dry_run=dry_run,
                                          skip_bad=skip_bad, actor=actor(), timezone=timezone,
                                          start=start, progress=progress)
    finally:
        if "bar" in bar:
            bar["bar"].__exit__(None, None, None)
    _show(report, as_json)
    if report.problems and (dry_run or not skip_bad):
        count = len(report.problems)
        rows = f"{count} of {report.rows} row{'s' if report.rows != 1 else ''}"
        listed = "listed in the JSON" if as_json else "listed above"
        if dry_run:
            raise CliError(f"{rows} would be refused ({listed}); dry run, nothing was written")
        raise CliError(f"{rows} refused ({listed}); nothing was imported "
                       f"(fix them, or import the rest with --skip-bad)")


def _show(report, as_json: bool) -> None:
    if as_json:
        emit_json(report.as_dict())
        return
    for problem in report.problems:
        where = f"line {problem.line}" + (f", {problem.field}" if problem.field else "")
        click.echo(f"{where}: {problem.message}")
    if report.dry_run:
        done = f"{report.would_import} would be imported"
    elif report.problems and not report.written and report.would_import:
        done = f"0 imported ({report.would_import} good)"
    else:
        done = f"{report.imported} imported"
    summary = (f"{report.kind} from {report.file}: {report.rows} rows; {done}, "
               f"{report.present} already present, {len(report.problems)} refused")
    if not report.dry_run and not report.written:
        summary += "; nothing changed"
    click.echo(summary)


_command("accounts", "Import accounts.",
         "number, name (required); tariff, kind (person/company), email, phone, "
         "credit_limit, state (active/frozen/closed)")
_command("services", "Import network services (PPPoE logins, IPoE bindings).",
         "account (required); kind (pppoe/ipoe), login, password, mac, circuit_id, "
         "static_ip, pool, ipv6_prefix")
_command("balances", "Import opening balances (negative ones too: a debt brought over).",
         "account, amount (required); memo")
_command("payments", "Import past payments.",
         "account, amount, external_id (required); paid_at, provider, memo")
