"""The ``abonent`` command: one click group, subcommands loaded lazily so that
``--help`` works with no config and no database (as Indico's CLI does)."""

from __future__ import annotations

import importlib
import re
import sys

import click

# name -> ("module:attribute", one-line help); each module defines one click
# command or group, imported only when that command runs.
COMMANDS = {
    "db": ("scripts.admin:db", "Database schema: upgrade, check."),
    "tariff": ("scripts.tariff_cli:tariff", "Tariffs: add, edit, archive, show, list."),
    "option-type": ("scripts.catalogue_cli:option_type", "Options on sale: add, edit, list."),
    "policy": ("scripts.catalogue_cli:policy", "The balance ladder: show, set."),
    "account": ("scripts.accounts_cli:account", "Accounts: add, edit, block, unblock, close, find, show, list."),
    "service": ("scripts.accounts_cli:service", "Network services: add, edit, remove, list (PPPoE, IPoE)."),
    "pool": ("scripts.admin:pool", "IP address pools: add, list."),
    "payment": ("scripts.admin:payment", "Payments: add, list, show, refund, poll, expire, autopay, reconcile, statement."),
    "payments": ("scripts.admin:payment", "The same as payment: add, list, show, refund, poll, reconcile, statement."),
    "agent": ("scripts.agents_cli:agent", "Payment agents (OSMP terminals): add, edit, list, remove."),
    "voucher": ("scripts.vouchers_cli:voucher_group", "Vouchers (prepaid cards): issue, list."),
    "nas": ("scripts.nas_cli:nas", "NAS clients: add, edit (secret rotation), remove, list."),
    "cabinet-user": ("scripts.cabinet_users_cli:cabinet_user", "Cabinet logins: add, list, remove, reset-password, link."),
    "session": ("scripts.admin:session_group", "RADIUS sessions: list, show, kick."),
    "ledger": ("scripts.admin:ledger_command", "An account's ledger entries."),
    "request": ("scripts.requests_cli:request_group", "Service requests: list, set status."),
    "fees": ("scripts.fees_cli:fees", "Fees: run the daily charge by hand."),
    "coa": ("scripts.coa_cli:coa", "CoA / Disconnect jobs: list."),
    "collector": ("scripts.collector_cli:collector_group", "NetFlow collector: stats."),
    "serve": ("scripts.serve:serve", "Run a server: radius, cabinet, collector, scheduler, enforcer."),
    "nas-sim": ("scripts.nas_sim:nas_sim", "Simulate a BRAS: auth, accounting, NetFlow, CoA."),
    "demo": ("scripts.demo:demo", "Seed demo data and run everything on SQLite."),
    "charge": ("scripts.money_cli:charge", "Charge an account by hand (a manual debit)."),
    "refund": ("scripts.money_cli:refund", "Refund money from an account's balance."),
    "reverse": ("scripts.money_cli:reverse", "Reverse a ledger entry (once)."),
    "transfer": ("scripts.money_cli:transfer", "Move money between two accounts."),
    "audit": ("scripts.money_cli:audit", "Read the audit log, newest first."),
    "traffic": ("scripts.reports_cli:traffic", "An account's traffic by class or day."),
    "traffic-tiers": ("scripts.traffic_tiers_cli:traffic_tiers", "Traffic rollup tiers and partitions: show, run."),
    "report": ("scripts.reports_cli:report", "Reports: reconcile, debtors, revenue."),
    "import": ("scripts.import_cli:import_group", "Import from another billing: accounts, services, balances, payments."),
    "package": ("scripts.packages_cli:package", "Service packages: add, edit, list, archive, on, off."),
    "discount": ("scripts.packages_cli:discount", "Discounts on tariff or package fees: add, list, remove."),
    "promo": ("scripts.packages_cli:promo", "Promo codes: add, list, redeem."),
    "bonus": ("scripts.packages_cli:bonus", "Bonus points: set the earn rate, show an account's."),
    "banner": ("scripts.banners_cli:banner", "Banners on the cabinet's overview: add, list, remove."),
    "notify": ("scripts.notify_cli:notify_group", "Notifications: list, show, send, broadcast, retry, deliver."),
    "rates": ("scripts.telephony_cli:rates", "Telephony rate tables: plan, import, show, list."),
    "phone": ("scripts.telephony_cli:phone", "Phone numbers and SIP logins of accounts: add, list, remove."),
    "cdr": ("scripts.telephony_cli:cdr_group", "Call records: import Asterisk or FreeSWITCH CSV."),
    "calls": ("scripts.telephony_cli:calls", "Rated calls: list, rerate."),
    "bulk": ("scripts.bulk_cli:bulk_group", "Bulk changes for many accounts: preview, apply, show, list, revert."),
    "change": ("scripts.bulk_cli:change_group", "Changes scheduled for a day: schedule, list, cancel."),
    "customer": ("scripts.customers_cli:customer", "Customers with many accounts: add, list, show, attach, detach."),
    "org": ("scripts.customers_cli:org_group", "A customer's tree of units: tree, add, rename, move, remove."),
    "grant": ("scripts.customers_cli:grant_group", "Cabinet logins' rights on a customer's branch: add, list, remove."),
    "limit": ("scripts.spending_cli:limit", "Monthly spending limits on accounts and branches: set, list, remove, run."),
    "spend": ("scripts.spending_cli:spend", "Spending reports by branch and service (CSV, PDF, JSON)."),
    "archive": ("scripts.archive_cli:archive_group", "Data lifecycle: archive old sessions and leases (run, status)."),
}


_ACTOR = re.compile(r"^[\w.@:+-]{1,80}$")


def check_actor(ctx, param, value):
    if value is not None and not _ACTOR.match(value):
        raise click.BadParameter("must be 1-80 letters, digits or . @ : + - _")
    return value


class LazyGroup(click.Group):
    def __init__(self, *args, lazy: dict[str, tuple[str, str]] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = lazy or {}

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx, name):
        if name in self.lazy:
            module, attribute = self.lazy[name][0].split(":")
            return getattr(importlib.import_module(module), attribute)
        return super().get_command(ctx, name)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True,
             **extra):
        """Every refusal is one line, ``abonent: …``, exit 2 for bad input:
        no usage block to scroll past, in a shell or a script."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            result = super().main(args, prog_name, complete_var, False, **extra)
        except click.exceptions.Exit as done:
            sys.exit(done.exit_code)
        except click.UsageError as error:
            message = error.format_message()
            path = error.ctx.command_path.split(" ", 1) if error.ctx is not None else []
            if len(path) == 2:
                message = f"{path[1]}: {message}"
            click.echo(f"abonent: {message}", err=True)
            sys.exit(error.exit_code)
        except click.ClickException as error:
            error.show()
            sys.exit(error.exit_code)
        except click.Abort:
            click.echo("abonent: aborted", err=True)
            sys.exit(1)
        except BrokenPipeError:
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)

    def format_commands(self, ctx, formatter):
        # The listing comes from the table, so --help imports nothing.
        rows = [(name, self.lazy[name][1]) for name in sorted(self.lazy)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, lazy=COMMANDS,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", envvar="ABONENT_CONFIG", type=click.Path(dir_okay=False),
              help="TOML settings file (default: built-in settings + ABONENT_* env vars).")
@click.option("--actor", envvar="ABONENT_ACTOR", callback=check_actor,
              help="Who is acting, for the audit log (default: the OS user).")
@click.version_option(package_name="abonent")
@click.pass_context
def cli(ctx, config_path, actor):
    """abonent — ISP billing: RADIUS AAA, NetFlow, rating and a subscriber cabinet."""
    ctx.obj = {"config_path": config_path, "actor": actor}


def main() -> None:
    # click turns UsageError into exit 2 with a sentence; our own errors do
    # the same through scripts.common.fail.
    sys.exit(cli.main(standalone_mode=True))


if __name__ == "__main__":
    main()
