"""Alembic driven from code: ``abonent db upgrade`` and ``alembic check``."""

from __future__ import annotations

import enum
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    command.upgrade(alembic_config(engine), revision)


class SchemaState(enum.Enum):
    EMPTY = "empty"        # no alembic_version: `db upgrade` never ran
    BEHIND = "behind"      # an older revision than this code's head
    CURRENT = "current"    # at head (or ahead: a newer node migrated it)


def schema_state(engine: Engine) -> SchemaState | DBAPIError:
    """Where the database's schema stands, or the error reaching it."""
    try:
        with engine.connect() as connection:
            current = set(MigrationContext.configure(connection).get_current_heads())
    except DBAPIError as error:
        return error
    if not current:
        return SchemaState.EMPTY
    script = ScriptDirectory.from_config(alembic_config(engine))
    known = {revision.revision for revision in script.walk_revisions()}
    heads = set(script.get_heads())
    if current == heads or not current <= known:
        return SchemaState.CURRENT
    return SchemaState.BEHIND


def check(engine: Engine) -> None:
    """Raise if the models and the migrations disagree."""
    command.check(alembic_config(engine))


def revision(engine: Engine, message: str) -> None:
    command.revision(alembic_config(engine), message=message, autogenerate=True)


if __name__ == "__main__":
    # Developers: `python -m config.migrate "what changed"` writes a new
    # revision from the difference between the models and head.
    import sys
    import tempfile

    from config.db import make_engine

    with tempfile.TemporaryDirectory() as folder:
        engine = make_engine(f"sqlite:///{folder}/head.sqlite3")
        upgrade(engine)
        revision(engine, sys.argv[1] if len(sys.argv) > 1 else "schema change")
