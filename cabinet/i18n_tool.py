"""Add Russian translations to the cabinet's catalogue and recompile it.

    python -m cabinet.i18n_tool new.json

``new.json`` maps an English message id to its Russian text; a plural
message is ``"singular|plural": ["одна", "две", "пять"]`` (Russian has three
forms). The catalogue is rewritten sorted and the .mo compiled, under a file
lock so that two people (or agents) adding strings at once do not lose each
other's work. Run ``pytest tests/unit/test_cabinet_i18n.py`` afterwards.
"""

from __future__ import annotations

import fcntl
import json
import sys
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

LC_MESSAGES = Path(__file__).resolve().parent / "translations" / "ru" / "LC_MESSAGES"
LOCK = Path("/tmp/abonent-cabinet-po.lock")


def merge(entries: dict) -> int:
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        po = LC_MESSAGES / "messages.po"
        with open(po, "rb") as handle:
            catalog = read_po(handle)
        for key, text in entries.items():
            if isinstance(text, list):
                singular, plural = key.split("|", 1)
                catalog.add((singular, plural), tuple(text))
            else:
                catalog.add(key, text)
        with open(po, "wb") as handle:
            write_po(handle, catalog, width=100, sort_output=True)
        with open(LC_MESSAGES / "messages.mo", "wb") as handle:
            write_mo(handle, catalog)
    return len(entries)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    entries = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    print(f"{merge(entries)} messages merged into {LC_MESSAGES / 'messages.po'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
