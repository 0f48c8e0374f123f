"""The benches' C load generators (bench/*.c), compiled on first use into
the temp folder and rebuilt when their source changes."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path


def compiled(source_name: str) -> str | None:
    """The path of bench/``source_name`` compiled with -O2, or None without a C compiler."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    source = Path(__file__).with_name(source_name)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:12]
    binary = Path(tempfile.gettempdir()) / f"abonent-{source.stem}-{digest}"
    if not binary.exists():
        partial = binary.with_suffix(f".{os.getpid()}")
        subprocess.run([compiler, "-O2", "-o", str(partial), str(source)], check=True)
        partial.replace(binary)
    return str(binary)
