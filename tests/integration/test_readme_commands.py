"""The README's two commands (``./demo.sh`` and ``bash .ci/run``) on a fresh
machine: as root, where sudo is often absent, and as a user with sudo.

The programs they call (id, sudo, apt-get, dpkg-query, python3, pip, …) are
small stand-ins on PATH that write down how they were called, so the test
sees who would have installed what without touching the machine. The real
thing, as root, is the demo test (tests/integration/test_demo.py) and a run
of the README by hand.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Real programs the scripts use besides the stand-ins.
REAL = ("dirname", "rm", "env", "grep", "mktemp", "cat", "mkdir", "seq", "touch", "chmod")

STUBS = {
    # id -u: the user we pretend to be.
    "id": 'echo "$FAKE_UID"',
    # sudo runs the command as "root" (FAKE_UID=0 for it) and says so; like
    # the real one (env_reset) it does not pass DEBIAN_FRONTEND on.
    "sudo": 'echo "sudo $*" >> "$CALLS"; unset DEBIAN_FRONTEND; FAKE_UID=0 exec "$@"',
    "apt-get": 'echo "apt-get $* uid=$FAKE_UID frontend=${DEBIAN_FRONTEND:-}" >> "$CALLS"\n'
               '[ "$FAKE_UID" = 0 ] || exit 100\n'
               'case "$*" in *install*) touch "$STATE/venv-installed";; esac',
    "dpkg-query": "exit 1",  # nothing is installed on a fresh machine
    # Node.js's npm (the machines have it): installs axe-core for the browser tests.
    "npm": 'echo "npm $*" >> "$CALLS"',
    # python3 -m venv DIR works once python3-venv is "installed".
    "python3": 'echo "python3 $*" >> "$CALLS"\n'
               'if [ "$1 $2" = "-m venv" ]; then\n'
               '  [ -e "$STATE/venv-installed" ] || { mkdir -p "$3"; exit 1; }\n'
               '  mkdir -p "$3/bin"\n'
               '  for tool in pip python abonent pytest; do\n'
               '    printf \'#!/bin/sh\\necho "%s $*" >> "$CALLS"\\n\' "$tool" > "$3/bin/$tool"\n'
               '    chmod +x "$3/bin/$tool"\n'
               '  done\n'
               'fi',
}


def _sandbox(tmp_path: Path, *, uid: int, sudo: bool, venv_installed: bool) -> dict:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in STUBS.items():
        if name == "sudo" and not sudo:
            continue
        path = bin_dir / name
        path.write_text("#!/bin/sh\n" + body + "\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    for name in REAL:
        found = shutil.which(name)
        assert found, name
        (bin_dir / name).symlink_to(found)
    state = tmp_path / "state"
    state.mkdir()
    if venv_installed:
        (state / "venv-installed").touch()
    return {"PATH": str(bin_dir), "FAKE_UID": str(uid), "CALLS": str(tmp_path / "calls"),
            "STATE": str(state), "HOME": str(tmp_path)}


def _calls(tmp_path: Path) -> list[str]:
    path = tmp_path / "calls"
    return path.read_text().splitlines() if path.exists() else []


def _project_copy(tmp_path: Path, *files: str) -> Path:
    project = tmp_path / "project"
    for name in files:
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, project / name)
    return project


# -- ./demo.sh ---------------------------------------------------------------------

@pytest.mark.parametrize("uid, sudo, installer", [
    (0, False, ""),          # root in a fresh container: no sudo, apt-get itself
    (0, True, ""),           # root with sudo installed: still no sudo needed
    (1000, True, "sudo "),   # a user: through sudo
])
def test_demo_sh_installs_python3_venv_as_root_and_as_a_user(tmp_path, uid, sudo, installer):
    project = _project_copy(tmp_path, "demo.sh")
    env = _sandbox(tmp_path, uid=uid, sudo=sudo, venv_installed=False)
    result = subprocess.run(["/bin/sh", str(project / "demo.sh"), "--cabinet-port", "0"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    calls = _calls(tmp_path)
    installs = [c for c in calls if c.startswith(("apt-get", "sudo"))]
    if installer:
        assert "sudo apt-get update -qq" in installs
        assert any(c.startswith("sudo env DEBIAN_FRONTEND=noninteractive apt-get install")
                   for c in installs), installs
    else:
        assert not any(c.startswith("sudo") for c in calls), calls
    apt = [c for c in calls if c.startswith("apt-get install")]
    assert apt and "python3-venv" in apt[0] and "uid=0" in apt[0], calls
    assert "frontend=noninteractive" in apt[0]
    assert calls[-2:] == ["pip install -q -e .", "abonent demo --cabinet-port 0"], calls


def test_demo_sh_needs_no_apt_when_venv_works(tmp_path):
    project = _project_copy(tmp_path, "demo.sh")
    env = _sandbox(tmp_path, uid=1000, sudo=False, venv_installed=True)
    result = subprocess.run(["/bin/sh", str(project / "demo.sh")], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    calls = _calls(tmp_path)
    assert not any(c.startswith(("apt-get", "sudo")) for c in calls), calls
    assert calls[-1] == "abonent demo"


def test_demo_sh_says_what_to_do_for_a_user_without_sudo(tmp_path):
    project = _project_copy(tmp_path, "demo.sh")
    env = _sandbox(tmp_path, uid=1000, sudo=False, venv_installed=False)
    result = subprocess.run(["/bin/sh", str(project / "demo.sh")], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "python3-venv is missing" in result.stderr and "as root" in result.stderr
    assert "Traceback" not in result.stderr
    assert not any(c.startswith("apt-get") for c in _calls(tmp_path))


# -- bash .ci/run --------------------------------------------------------------------

@pytest.mark.parametrize("uid, sudo, installer", [(0, False, ""), (1000, True, "sudo ")])
def test_ci_run_installs_its_packages_as_root_and_as_a_user(tmp_path, uid, sudo, installer):
    project = _project_copy(tmp_path, ".ci/run")
    env = _sandbox(tmp_path, uid=uid, sudo=sudo, venv_installed=True)
    result = subprocess.run(["/bin/bash", str(project / ".ci" / "run"), "-x", "tests/unit"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    calls = _calls(tmp_path)
    apt = [c for c in calls if c.startswith("apt-get install")]
    assert apt and "uid=0" in apt[0] and "frontend=noninteractive" in apt[0], calls
    assert "chromium" in apt[0] and "python3-venv" in apt[0]
    assert any(c.startswith("npm ci --prefix tests/e2e/axe") for c in calls), calls
    assert any(c.startswith("sudo") for c in calls) == bool(installer), calls
    assert calls[-1] == "pytest -q -rs -x tests/unit", calls


def test_ci_run_says_what_to_do_for_a_user_without_sudo(tmp_path):
    project = _project_copy(tmp_path, ".ci/run")
    env = _sandbox(tmp_path, uid=1000, sudo=False, venv_installed=True)
    result = subprocess.run(["/bin/bash", str(project / ".ci" / "run")], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "needs root" in result.stderr and "Traceback" not in result.stderr


def test_the_readme_commands_start_without_sudo():
    readme = (ROOT / "README.md").read_text()
    blocks = readme.split("```sh\n")[1:3]
    commands = [block.split("```")[0].strip() for block in blocks]
    assert commands == ["./demo.sh", "bash .ci/run"]
    assert os.access(ROOT / "demo.sh", os.X_OK)
