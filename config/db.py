"""Database wiring: the declarative Base, the Money type, engine and sessions.

The same code runs on SQLite (the embedded default) and on PostgreSQL
through psycopg 3.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import namedtuple
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Numeric, create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, sessionmaker
from sqlalchemy.types import TypeDecorator

MONEY_SCALE = 2
_QUANTUM = Decimal(1).scaleb(-MONEY_SCALE)
_MINOR = 10 ** MONEY_SCALE

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    pass


Base.metadata.naming_convention = NAMING_CONVENTION


def utcnow() -> dt.datetime:
    """Naive UTC: every stored time is UTC (DESIGN: time is stored in UTC)."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def money(value: Any) -> Decimal:
    """Decimal with the ledger's fixed scale; refuses floats (they are not money)."""
    if isinstance(value, float):
        raise TypeError("money must not be a float")
    if isinstance(value, int):
        value = Decimal(value)
    elif isinstance(value, str):
        value = Decimal(value.strip())
    if not isinstance(value, Decimal) or not value.is_finite():
        raise ValueError(f"not an amount of money: {value!r}")
    quantized = value.quantize(_QUANTUM)
    if quantized != value:
        raise ValueError(f"amount {value} has more than {MONEY_SCALE} decimal places")
    return quantized


class Money(TypeDecorator):
    """NUMERIC(14, 2) on PostgreSQL; integer minor units (kopecks) on SQLite.

    SQLite has no exact decimal type: its NUMERIC affinity stores REAL, and a
    sum of many payments in REAL drifts. Integers are exact, and arithmetic
    in SQL (``balance = balance + :amount``, ``SUM(amount)``) stays exact.
    """

    impl = Numeric(14, MONEY_SCALE)
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(Numeric(14, MONEY_SCALE, asdecimal=True))

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        value = money(value) if not isinstance(value, Decimal) else value.quantize(_QUANTUM)
        if dialect.name == "sqlite":
            return int(value * _MINOR)
        return value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if dialect.name == "sqlite":
            return (Decimal(int(value)) / _MINOR).quantize(_QUANTUM)
        return Decimal(value).quantize(_QUANTUM)

    # A plain number next to a money column is money too (balance + 5).
    # Beware: so is a multiplier (2 * balance would double-scale on SQLite);
    # scale money in Python instead.
    def coerce_compared_value(self, op, value):
        return self


def _sqlite_pragmas(dbapi_connection, _record):
    # pysqlite's own transaction handling is turned off so that we can start
    # every transaction with BEGIN IMMEDIATE: a deferred transaction that
    # reads and then writes can fail with "database is locked" when another
    # writer got there first, without waiting for busy_timeout. The price:
    # a thread must not open a second session while its first one is in a
    # transaction (it would wait for itself).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(connection):
    connection.exec_driver_sql("BEGIN IMMEDIATE")


CONNECT_TIMEOUT_S = 5


def make_engine(url: str, echo: bool = False, **kwargs) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, echo=echo, connect_args={"timeout": 30,
                                                             "check_same_thread": False},
                               **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    if "connect_timeout" not in url:
        # Without it a connect into a partition that drops packets waits
        # for the kernel's TCP timeout (minutes): the RADIUS writer and the
        # enforcer would hang there instead of retrying. The URL may say
        # otherwise (?connect_timeout=N).
        kwargs.setdefault("connect_args", {}).setdefault("connect_timeout", CONNECT_TIMEOUT_S)
    engine = create_engine(url, echo=echo, **kwargs)
    event.listen(engine, "handle_error", _server_gone_is_a_disconnect)
    if not kwargs.get("pool_pre_ping"):
        event.listen(engine.pool, "checkin", _note_checkin)
        event.listen(engine.pool, "checkout", _ping_if_idle)
    return engine


# SQLSTATEs that say the server this connection reached can no longer take
# our writes, while the database as a whole may well: it is a standby, or
# a primary that was demoted (25006 read_only_sql_transaction), or it is
# shutting down (57P01 admin_shutdown, 57P02 crash_shutdown) or starting
# (57P03 cannot_connect_now). psycopg raises 25006 as an InternalError on
# a connection that is healthy, so the pool would hand the same connection
# out again and again (and the 57P0x errors may arrive before the socket is
# seen to be closed). Treated as a
# disconnect, the connection (and the pool's older ones) is thrown away and
# the next checkout connects afresh: with a host list and
# ``target_session_attrs=read-write`` (docs/scaling.md) to whichever host
# is the primary now.
SERVER_GONE_SQLSTATES = frozenset({"25006", "57P01", "57P02", "57P03"})


def server_gone(error: BaseException) -> bool:
    """The DBAPI error says this server cannot take writes (see above)."""
    original = getattr(error, "orig", None) or error
    return getattr(original, "sqlstate", None) in SERVER_GONE_SQLSTATES


def discard_if_gone(connection: Connection, error: BaseException, cursor=None) -> bool:
    """For an error raised by a DBAPI call made on ``connection``'s driver
    connection directly (SQLAlchemy did not see it; ``cursor``: the one it
    was raised on, if any): if it says the connection is dead or the server
    cannot take writes, invalidate the connection and the pool's older
    ones, as Connection.execute does on a disconnect. True if it did."""
    dialect = connection.dialect
    if not isinstance(error, dialect.loaded_dbapi.Error) or connection.invalidated:
        return False
    fairy = connection.connection
    if not (dialect.is_disconnect(error, fairy.dbapi_connection, cursor) or server_gone(error)):
        return False
    connection.engine.pool._invalidate(fairy, error)
    connection.invalidate(error)
    return True


def _server_gone_is_a_disconnect(context) -> None:
    if not context.is_disconnect and server_gone(context.original_exception):
        context.is_disconnect = True


# A pooled connection idle longer than this is pinged before it is handed
# out (the server may have restarted, or a firewall dropped the socket).
# SQLAlchemy's pool_pre_ping pings on every checkout: one round trip more
# per cabinet page or scheduler step, for connections used a millisecond
# ago. A connection that dies while in steady use fails its one request and
# is dropped by the pool.
IDLE_PING_S = 5.0


def _note_checkin(_dbapi_connection, record) -> None:
    record.info["checked_in_at"] = time.monotonic()


def _ping_if_idle(dbapi_connection, record, _proxy) -> None:
    # No stamp: the connection was opened for this checkout (the pool clears
    # ``info`` with the connection it belongs to), so it is alive.
    checked_in_at = record.info.get("checked_in_at")
    if checked_in_at is None or time.monotonic() - checked_in_at < IDLE_PING_S:
        return
    try:
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        dbapi_connection.rollback()
    except Exception as error:
        # The pool discards this connection and checks out another.
        raise DisconnectionError(f"idle connection is dead: {error}") from error


def make_sessionmaker(engine: Engine) -> sessionmaker:
    return sessionmaker(bind=engine, expire_on_commit=False)


def is_postgres(engine_or_session) -> bool:
    bind = getattr(engine_or_session, "bind", None) or engine_or_session
    return bind.dialect.name == "postgresql"


class CompiledSelect:
    """A Core SELECT run straight on the DBAPI cursor, for the hottest reads.

    ``Connection.execute`` looks the compiled form up in its cache, builds
    the parameters and wraps the cursor in a CursorResult: for the cabinet
    dashboard's three small SELECTs that cost twice what psycopg itself
    spends (bench: 640 us against 290 us of CPU a page). Here the statement
    is compiled once per dialect, with its fixed parameters, bind and result
    processors (the Money type's among them) worked out then; a call
    converts the given parameters, executes and returns plain named tuples.

    Kept from ``execute``: a Session's autoflush and transaction (SQLite's
    BEGIN IMMEDIATE is its ``begin`` event), the ``before/after cursor
    execute`` events (their return values are not used), and on an error
    that shows the database connection dead, that connection and the pool's
    older ones are thrown away. Not kept: ``echo`` logging, and the error
    is the DBAPI's own, not wrapped in sqlalchemy.exc.DBAPIError.
    """

    __slots__ = ("statement", "_row", "_plans")

    def __init__(self, statement) -> None:
        self.statement = statement
        # Duplicate names raise here, at import, not on a page.
        self._row = namedtuple("Row", statement.selected_columns.keys())
        self._plans: dict[Any, list] = {}

    def _plan(self, dialect) -> list:
        plan = self._plans.get(dialect)
        if plan is None:
            compiled = self.statement.compile(dialect=dialect)
            if (compiled.literal_execute_params or compiled.post_compile_params
                    or compiled.escaped_bind_names):
                raise ValueError("CompiledSelect takes no expanding, literal-execute "
                                 "or escaped binds")
            fixed, binds = {}, []
            for name, bind in compiled.binds.items():
                if bind.callable is not None:
                    raise ValueError(f"CompiledSelect takes no callable bind ({bind.key})")
                processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
                # A bind with a value (a literal, .limit(10)) is a default
                # the caller may override, as with execute.
                binds.append((name, bind.key, processor, bind.required))
                if not bind.required:
                    value = bind.effective_value
                    fixed[name] = processor(value) if processor else value
            order = tuple(compiled.positiontup) if compiled.positional else None
            # The result processors depend on the DBAPI's type codes (the
            # cursor's description): found at the first execution.
            plan = self._plans[dialect] = [compiled.string, fixed, tuple(binds), order, None]
        return plan

    def _result_processors(self, dialect, description) -> tuple:
        processors = []
        for index, (column, described) in enumerate(zip(self.statement.selected_columns,
                                                        description)):
            processor = column.type.dialect_impl(dialect).result_processor(dialect, described[1])
            if processor is not None:
                processors.append((index, processor))
        return tuple(processors)

    def all(self, connection, params: dict[str, Any]) -> list:
        """The rows for ``params`` (bind key → value), on a Connection or a
        Session (its connection, in its transaction, after its autoflush)."""
        if not isinstance(connection, Connection):
            session = connection
            if session.autoflush and (session.new or session.dirty or session.deleted):
                session.flush()
            connection = session.connection()
        dialect = connection.dialect
        plan = self._plan(dialect)
        sql, fixed, binds, order, results = plan
        values = dict(fixed)
        for name, key, processor, required in binds:
            # By the bind's key, or by its compiled name (an anonymous
            # bind's, "param_1"), as construct_params looks them up.
            if key in params:
                value = params[key]
            elif name in params or required:
                value = params[name]
            else:
                continue
            values[name] = processor(value) if processor else value
        if order is not None:
            values = tuple(values[name] for name in order)
        fairy = connection.connection
        dispatch = connection.dispatch
        cursor = None
        try:
            cursor = fairy.dbapi_connection.cursor()
            for listener in dispatch.before_cursor_execute:
                listener(connection, cursor, sql, values, None, False)
            cursor.execute(sql, values)
            rows = cursor.fetchall()
            if results is None:
                results = plan[4] = self._result_processors(dialect, cursor.description)
            for listener in dispatch.after_cursor_execute:
                listener(connection, cursor, sql, values, None, False)
        except dialect.loaded_dbapi.Error as error:
            discard_if_gone(connection, error, cursor)
            raise
        finally:
            if cursor is not None:
                cursor.close()
        make = self._row._make
        if not results:
            return [make(row) for row in rows]
        converted = []
        for row in rows:
            row = list(row)
            for index, processor in results:
                row[index] = processor(row[index])
            converted.append(make(row))
        return converted

    def first(self, connection, params: dict[str, Any]):
        rows = self.all(connection, params)
        return rows[0] if rows else None
