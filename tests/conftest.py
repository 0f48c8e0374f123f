"""Shared fixtures.

Every test that takes ``db`` (or ``ctx``/``session``) runs twice: on SQLite
and on PostgreSQL. Without a reachable PostgreSQL the PostgreSQL half is
skipped; with ``ABONENT_STRICT=1`` (set by .ci/run) any skip at all is a
failure, so CI cannot go green by skipping a PostgreSQL or peer test.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Message
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from config.context import Context, open_context
from config.db import Base
from config.migrate import upgrade
from config.settings import load_settings

STRICT = os.environ.get("ABONENT_STRICT") == "1"
PG_URL = os.environ.get("ABONENT_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
ARTIFACTS = Path(os.environ.get("ABONENT_TEST_ARTIFACTS", Path(__file__).resolve().parent.parent
                                / "test-artifacts"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if STRICT and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"skipped under ABONENT_STRICT=1 (CI): {reason}"


def need_program(name: str) -> str:
    """Path of a peer program, or skip (a failure in CI)."""
    path = shutil.which(name) or (f"/usr/bin/{name}" if os.path.exists(f"/usr/bin/{name}") else None)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop_gunicorn(process: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM (a graceful stop), then SIGKILL if it is not down in time."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Inbox(Message):
    """The mail a real SMTP server on loopback (aiosmtpd) received."""

    def __init__(self):
        super().__init__()
        self.messages = []
        self.port: int | None = None

    def handle_message(self, message):
        self.messages.append(message)

    def wait(self, count: int, timeout: float = 10.0):
        """At least ``count`` messages (all of them), waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.messages) >= count, f"{len(self.messages)} mails, wanted {count}"
        return self.messages

    def wait_for(self, recipient: str, timeout: float = 10.0):
        """The first message to ``recipient``, waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.messages:
                if message["To"] == recipient:
                    return message
            time.sleep(0.05)
        raise AssertionError(f"no mail to {recipient}")

    @staticmethod
    def text(message) -> str:
        return message.get_payload(decode=True).decode(message.get_content_charset() or "utf-8")


@pytest.fixture
def inbox():
    """A real SMTP server on a free loopback port; ``inbox.port`` names it."""
    handler = Inbox()
    controller = Controller(handler, hostname="127.0.0.1", port=free_tcp_port())
    controller.start()
    handler.port = controller.port
    yield handler
    controller.stop()


@pytest.fixture
def abonent(db_url):
    """Run the `abonent` command against the test database:
    ``abonent("account", "list", "--json", code=0)`` asserts the exit code."""
    from click.testing import CliRunner

    from scripts.cli import cli

    runner = CliRunner()

    def run(*args, code=0):
        result = runner.invoke(cli, list(args), env={"ABONENT_DATABASE_URL": db_url},
                               catch_exceptions=False)
        assert result.exit_code == code, (result.output, result.stderr)
        return result
    return run


class Ran:
    """A finished `abonent` process: what CliRunner's result offers."""

    def __init__(self, completed: subprocess.CompletedProcess):
        self.exit_code = completed.returncode
        self.stdout = completed.stdout
        self.stderr = completed.stderr
        self.output = completed.stdout + completed.stderr


ABONENT_EXE = str(Path(sys.executable).with_name("abonent"))


@pytest.fixture
def abonent_exe(db_url, tmp_path):
    """Run the installed `abonent` executable against the test database, as
    an admin's shell does: ``abonent_exe("account", "find", "Ivan", code=0)``;
    ``input=`` feeds stdin, ``env=`` adds variables. Refusals must be one
    line on stderr with no traceback."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("ABONENT_")}
    base.update(ABONENT_DATABASE_URL=db_url, ABONENT_DATA_DIR=str(tmp_path / "data"),
                ABONENT_ACTOR="admin:test", COLUMNS="200")

    def run(*args, code=0, input=None, env=None):
        completed = subprocess.run([ABONENT_EXE, *map(str, args)], capture_output=True,
                                   text=True, input=input, env={**base, **(env or {})},
                                   timeout=120)
        result = Ran(completed)
        assert result.exit_code == code, (args, result.stdout[-2000:], result.stderr[-2000:])
        assert "Traceback" not in result.stderr, result.stderr
        if code == 2:
            assert result.stderr.count("\n") == 1 and result.stderr.startswith("abonent: "), \
                result.stderr
        return result
    return run


def _pg_available() -> bool:
    try:
        engine = create_engine(PG_URL)
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def _databases(tmp_path_factory):
    """One migrated database per backend for the whole run."""
    created = {}
    yield created
    for kind, url in created.items():
        if kind == "postgresql":
            admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
            admin.dispose()


def _database_url(kind: str, databases: dict, tmp_path_factory) -> str:
    if kind in databases:
        return databases[kind]
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.sqlite3'}"
    else:
        if not _pg_available():
            pytest.skip(f"PostgreSQL is not reachable at {PG_URL}")
        name = f"abonent_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    context = make_context(url)
    upgrade(context.engine)
    context.dispose()
    databases[kind] = url
    return url


def make_context(url: str, **overrides) -> Context:
    environ = {"ABONENT_DATABASE_URL": url}
    environ.update({f"ABONENT_{k.upper()}": str(v) for k, v in overrides.items()})
    return open_context(settings=load_settings(environ=environ))


# PostgreSQL: the sequences owned by a table's column that were ever used.
_USED_SEQUENCES = text(
    "SELECT format('%I.%I', q.schemaname, q.sequencename), q.start_value "
    "FROM pg_sequences q JOIN pg_namespace n ON n.nspname = q.schemaname "
    "JOIN pg_class s ON s.relname = q.sequencename AND s.relnamespace = n.oid "
    "JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = s.oid "
    "AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') "
    "WHERE q.last_value IS NOT NULL")


def _wipe(context: Context) -> None:
    """Every table emptied and every identity restarted. On PostgreSQL only
    the tables holding rows are emptied, by DELETE, children first: a
    TRUNCATE of every table (and of each traffic partition) made new files
    for some 150 relations, a quarter of a second per test."""
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with context.engine.begin() as conn:
        if context.engine.dialect.name == "postgresql":
            holding = set(conn.execute(text(" UNION ALL ".join(
                f"SELECT '{table}' WHERE EXISTS (SELECT 1 FROM {table})"
                for table in tables))).scalars())
            for table in tables:
                if table in holding:
                    conn.execute(text(f"DELETE FROM {table}"))
            for sequence, start in conn.execute(_USED_SEQUENCES).all():
                conn.execute(text("SELECT setval(CAST(:s AS regclass), :v, false)"),
                             {"s": sequence, "v": start})
        else:
            for table in tables:
                conn.execute(text(f"DELETE FROM {table}"))


def _wiped(url: str) -> str:
    context = make_context(url)
    try:
        _wipe(context)
    finally:
        context.dispose()
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, _databases, tmp_path_factory) -> str:
    """The URL of an empty, migrated database: SQLite, then PostgreSQL."""
    return _wiped(_database_url(request.param, _databases, tmp_path_factory))


@pytest.fixture
def pg_url(_databases, tmp_path_factory) -> str:
    """For tests about PostgreSQL's own behaviour (concurrency)."""
    return _wiped(_database_url("postgresql", _databases, tmp_path_factory))


@pytest.fixture
def ctx(db_url):
    context = make_context(db_url)
    yield context
    context.dispose()


@pytest.fixture
def session(ctx):
    with ctx.Session() as s:
        yield s


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
