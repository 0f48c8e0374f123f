"""The README's operator's walkthrough works when pasted line by line.

The block after ``<!-- walkthrough -->`` in README.md is run as a shell
would run it pasted: one bash, each command in turn, stopping at the first
that fails, with the installed `abonent` first on PATH, against a fresh
database on SQLite and on PostgreSQL. Its comments promise outputs; the
test checks the ones that matter by reading the database back.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def walkthrough() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- walkthrough -->\s*```sh\n(.*?)```", text, re.S)
    assert match, "README.md lost its walkthrough block"
    return match.group(1)


def test_the_walkthrough_runs_pasted_line_by_line(db_url, tmp_path):
    script = walkthrough()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ABONENT_")}
    env.update(ABONENT_DATABASE_URL=db_url, ABONENT_DATA_DIR=str(tmp_path / "data"),
               PATH=f"{Path(sys.executable).parent}:{env['PATH']}", HOME=str(tmp_path),
               USER="noc", LOGNAME="noc")
    completed = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path,
                               env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, (completed.stdout[-3000:], completed.stderr[-3000:])
    assert "Traceback" not in completed.stderr

    def abonent(*args):
        out = subprocess.run(["abonent", *args], cwd=tmp_path, env=env, check=True,
                             capture_output=True, text=True).stdout
        return json.loads(out)

    shown = abonent("account", "show", "100002", "--json")
    assert shown["tariff"] == "Home 100"
    # 600 paid, 100 charged, 50 paid back out (a refund is a debit).
    assert shown["balance"] == "450.00"
    assert any(row["actor"] == "admin:noc" for row in abonent("audit", "--json"))
