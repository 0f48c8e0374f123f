"""Which database errors mean "this server cannot take our writes now"
(issue 19): retried as they are, never split into smaller batches and
dropped as refused."""

import psycopg
import pytest
from psycopg import errors
from sqlalchemy import exc

from aaa.server import database_unavailable
from config.db import server_gone


@pytest.mark.parametrize("error", [
    errors.ReadOnlySqlTransaction("cannot execute INSERT in a read-only transaction"),
    errors.AdminShutdown("terminating connection due to administrator command"),
    errors.CrashShutdown("terminating connection because of crash of another server process"),
    errors.CannotConnectNow("the database system is starting up"),
])
def test_a_standby_or_a_stopping_server_is_unavailable(error):
    assert server_gone(error)
    # Raw, as the accounting batch's own cursor raises it, and wrapped, as
    # SQLAlchemy raises it.
    assert database_unavailable(error)
    wrapped = exc.DBAPIError.instance("INSERT ...", {}, error, psycopg.Error)
    assert server_gone(wrapped) and database_unavailable(wrapped)


def test_a_lost_connection_is_unavailable_raw_or_wrapped():
    error = psycopg.OperationalError("the connection is lost")
    assert not server_gone(error)
    assert database_unavailable(error)
    assert database_unavailable(exc.DBAPIError.instance("SELECT 1", {}, error, psycopg.Error))


@pytest.mark.parametrize("error", [
    errors.UniqueViolation("duplicate key value violates unique constraint"),
    errors.NumericValueOutOfRange("bigint out of range"),
    errors.UntranslatableCharacter("unsupported Unicode escape sequence"),
])
def test_what_the_database_refuses_is_not_an_outage(error):
    """These are about the record: the writer splits the batch to find it."""
    assert not server_gone(error)
    assert not database_unavailable(error)
    assert not database_unavailable(exc.DBAPIError.instance("INSERT ...", {}, error,
                                                            psycopg.Error))
