"""Alembic driven from code: ``abonent db upgrade`` and ``alembic check``."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    command.upgrade(alembic_config(engine), revision)


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
