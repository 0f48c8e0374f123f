"""One process's view of the world: settings, engine and session factory."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

from config.db import make_engine, make_sessionmaker
from config.settings import Settings, load_settings


@dataclass
class Context:
    settings: Settings
    engine: Engine
    Session: sessionmaker

    def dispose(self) -> None:
        self.engine.dispose()


def open_context(config_path: str | None = None, settings: Settings | None = None) -> Context:
    settings = settings or load_settings(config_path)
    url = settings.database_url
    if url.startswith("sqlite:///"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(url, echo=settings.get("database", "echo"))
    return Context(settings=settings, engine=engine, Session=make_sessionmaker(engine))
