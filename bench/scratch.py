"""A scratch PostgreSQL database for a benchmark: created, migrated to the
head, handed over as (engine, url), and dropped afterwards whatever happens.
Shared by bench/fee_run.py, bench/import_accounts.py and bench/reports.py."""

from __future__ import annotations

import uuid
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from config.db import make_engine
from config.migrate import upgrade

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@contextmanager
def scratch_database(base_url: str = DEFAULT_URL, prefix: str = "abonent_bench"):
    """``base_url`` only says where CREATE DATABASE is issued."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(base_url).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    try:
        upgrade(engine)
        yield engine, url
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
