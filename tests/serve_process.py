"""An `abonent serve ...` command as a child process, for tests of the real
command line: its stderr is collected line by line."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                found.append(int(entry.name))
    return found


class ServeProcess:
    def __init__(self, args: list[str], env: dict, ready: str, prefix: list[str] = ()):
        """``prefix``: what runs the command (``ip netns exec NAME``)."""
        self.process = subprocess.Popen(
            [*prefix, sys.executable, "-m", "scripts.cli", "serve", *args],
            env=dict(os.environ, ABONENT_LOG_LEVEL="INFO", **env), stderr=subprocess.PIPE,
            text=True, cwd=ROOT)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.wait_for(ready)

    def _read(self):
        for line in self.process.stderr:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} in:\n" + "".join(self.lines))
            time.sleep(0.05)

    def workers(self, count: int, timeout: float = 30) -> list[int]:
        """The pids of the ``count`` worker processes (multiprocessing's
        spawn also starts a resource tracker, which is not one)."""
        deadline = time.monotonic() + timeout
        while True:
            found = [pid for pid in children(self.process.pid)
                     if "resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_text()]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.1)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        self._reader.join(10)
        self.process.stderr.close()
        return code
