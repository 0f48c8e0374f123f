"""Run the coverage-guided fuzz targets (atheris + libFuzzer) for a bounded time.

    python bench/fuzz.py TARGET [TARGET ...] [--seconds 3600]
    python bench/fuzz.py --all --seconds 30 --ci      # what .ci/run does
    python bench/fuzz.py netflow --seconds 3600 --merge
    python bench/fuzz.py radius_packet --replay crash-0123abcd

Targets (tests/fuzz/<target>.py, each documents its contract): radius_packet,
radius_server, netflow, cabinet_forms. One target runs at a time, in its own
process, on one core (libFuzzer without -jobs/-workers), for ``--seconds``
each. Every run starts from the repository's corpus (tests/fuzz/corpus/
<target>/) and writes what it finds to a work folder (--work, default
fuzz-work/<target>/); ``--merge`` then adds the inputs that reach new
coverage to the repository's corpus (libFuzzer -merge=1), to be committed.

A crash (a broken contract, an unexpected exception, a timeout, memory
blow-up) is saved under --artifacts (default test-artifacts/fuzz/) and the
command exits 1 after the other targets ran; ``--replay FILE`` feeds saved
inputs to a target without atheris and shows the traceback. A crash found
becomes a regression test in tests/unit/test_fuzz.py and its input goes to
the corpus, which plain pytest replays on every run.

Prints one line per target: runs, executions per second, coverage, corpus.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.fuzz import CORPUS, TARGETS, corpus_files, load  # noqa: E402

MAX_LEN = {"radius_packet": 4200, "radius_server": 4200, "netflow": 6000,
           "cabinet_forms": 600}
ARTIFACT_KINDS = ("crash-", "timeout-", "oom-", "leak-", "slow-unit-")


def _child(target: str, libfuzzer_args: list[str]) -> None:
    """Inside the fuzzing process: instrument, set up, hand over to libFuzzer."""
    import logging

    import atheris

    # Refusals are logged as warnings, thousands a second; errors stay visible.
    logging.disable(logging.WARNING)
    module = load(target)
    os.nice(5)  # a shared box: the engineers' own work comes first
    with atheris.instrument_imports(include=module.INSTRUMENT):
        one_input = module.setup()
    # libFuzzer runs argv[0] through the shell for -merge (and -fork): make
    # it the command that starts this child again.
    again = shlex.join([sys.executable, str(Path(__file__).resolve()), "--child", target, "--"])
    atheris.Setup([again, *libfuzzer_args], one_input)
    atheris.Fuzz()


def _summary(log: str) -> dict:
    """The last status line libFuzzer printed: runs, cov, ft, corpus."""
    found = {}
    for line in log.splitlines():
        match = re.match(r"#(\d+)\s+\S+\s+cov: (\d+) ft: (\d+) corp: (\d+)/(\S+)", line)
        if match:
            found = dict(runs=int(match[1]), cov=int(match[2]), ft=int(match[3]),
                         corpus=int(match[4]))
        match = re.match(r"Done (\d+) runs in (\d+) second", line)
        if match:
            found["runs"] = int(match[1])
    return found


def _artifacts(folder: Path) -> set[Path]:
    return {p for p in folder.iterdir() if p.name.startswith(ARTIFACT_KINDS)} \
        if folder.is_dir() else set()


def run(target: str, seconds: int, work: Path, artifacts: Path, timeout: int,
        extra: list[str]) -> bool:
    """One target for ``seconds``; True if it ran out its time without a crash."""
    corpus = CORPUS / target
    corpus.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    artifacts.mkdir(parents=True, exist_ok=True)
    before = _artifacts(artifacts)
    log_path = artifacts / f"{target}.log"
    args = [f"-max_total_time={seconds}", f"-timeout={timeout}", "-rss_limit_mb=2048",
            f"-max_len={MAX_LEN.get(target, 4096)}", f"-artifact_prefix={artifacts}/",
            "-print_final_stats=1", *extra, str(work), str(corpus)]
    command = [sys.executable, str(Path(__file__).resolve()), "--child", target, "--", *args]
    started = time.monotonic()
    with open(log_path, "w") as log_file:
        # Wall-clock bound as well: start-up, and libFuzzer's own final pass.
        try:
            code = subprocess.run(command, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT,
                                  timeout=seconds + 120).returncode
        except subprocess.TimeoutExpired:
            code = -1
    elapsed = time.monotonic() - started
    log = log_path.read_text(errors="replace")
    stats = _summary(log)
    new = sorted(_artifacts(artifacts) - before)
    runs = stats.get("runs", 0)
    ok = code == 0 and not new
    print(f"fuzz {target}: {elapsed:.0f} s, {runs} runs ({runs / max(elapsed, 1):.0f}/s), "
          f"cov {stats.get('cov', '?')}, ft {stats.get('ft', '?')}, "
          f"corpus {len(corpus_files(target))} in repo + "
          f"{sum(1 for p in work.iterdir() if p.is_file())} found: "
          f"{'ok' if ok else 'FAILED (exit %s)' % code}", flush=True)
    if not ok:
        tail = log.splitlines()[-60:]
        print("\n".join("    " + line for line in tail), file=sys.stderr)
        for path in new:
            print(f"  input saved: {path}\n  reproduce: python bench/fuzz.py {target} "
                  f"--replay {path}", file=sys.stderr)
    return ok


def merge(target: str, work: Path) -> bool:
    """Inputs from ``work`` that add coverage go to the repository's corpus."""
    import atheris  # noqa: F401  (the merge runs the instrumented target)

    corpus = CORPUS / target
    before = len(corpus_files(target))
    command = [sys.executable, str(Path(__file__).resolve()), "--child", target, "--",
               "-merge=1", f"-max_len={MAX_LEN.get(target, 4096)}", str(corpus), str(work)]
    log_path = work.parent / f"{target}-merge.log"
    with open(log_path, "w") as log_file:
        code = subprocess.run(command, cwd=ROOT, stdout=log_file,
                              stderr=subprocess.STDOUT).returncode
    print(f"merge {target}: corpus {before} -> {len(corpus_files(target))} files"
          + ("" if code == 0 else f" (merge FAILED, exit {code}: see {log_path})"))
    return code == 0


def replay(target: str, paths: list[str]) -> int:
    """Feed saved inputs to a target without atheris; 1 if any breaks it."""
    one_input = load(target).setup()
    failed = 0
    for name in paths:
        data = Path(name).read_bytes()
        try:
            one_input(data)
        except Exception:
            failed += 1
            print(f"{name}: FAILED", file=sys.stderr)
            traceback.print_exc()
        else:
            print(f"{name}: ok")
    return 1 if failed else 0


def write_seeds(target: str) -> int:
    """The target's seeds (real packets, real form values) into its corpus."""
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    seeds = load(target).seeds()
    for name, data in seeds.items():
        (folder / f"seed-{name}").write_bytes(data)
    return len(seeds)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        rest = argv[2:]
        _child(argv[1], rest[1:] if rest[:1] == ["--"] else rest)
        return 0
    parser = argparse.ArgumentParser(
        prog="python bench/fuzz.py", description=__doc__.split("\n\n")[0],
        epilog=f"targets: {', '.join(TARGETS)}",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="*", metavar="TARGET", help="targets to run")
    parser.add_argument("--all", action="store_true", help="every target, one after another")
    parser.add_argument("--seconds", type=int, default=60, help="fuzzing time per target "
                        "(default 60; hours for a long run: 3600, 14400)")
    parser.add_argument("--timeout", type=int, default=10,
                        help="seconds one input may take before it counts as a hang")
    parser.add_argument("--work", type=Path, default=None,
                        help="folder for new inputs (default fuzz-work/<target>; "
                        "with --ci a temporary one)")
    parser.add_argument("--artifacts", type=Path, default=ROOT / "test-artifacts" / "fuzz",
                        help="folder for crashing inputs and logs")
    parser.add_argument("--ci", action="store_true",
                        help="leave no files behind but the artifacts (CI)")
    parser.add_argument("--merge", action="store_true",
                        help="after fuzzing, add new-coverage inputs to tests/fuzz/corpus")
    parser.add_argument("--replay", nargs="+", metavar="FILE",
                        help="feed these inputs to the (one) target, no atheris needed")
    parser.add_argument("--write-seeds", action="store_true",
                        help="(re)write the targets' seed inputs into tests/fuzz/corpus")
    parser.add_argument("--libfuzzer", nargs=argparse.REMAINDER, default=[],
                        help="further libFuzzer flags, e.g. --libfuzzer -dict=radius.dict")
    options = parser.parse_args(argv)
    targets = list(TARGETS) if options.all else options.targets
    unknown = [t for t in targets if t not in TARGETS]
    if not targets or unknown:
        parser.error(f"name targets ({', '.join(TARGETS)}) or --all"
                     + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
    if options.seconds <= 0:
        parser.error("--seconds must be positive")
    if options.replay:
        if len(targets) != 1:
            parser.error("--replay takes exactly one target")
        return replay(targets[0], options.replay)
    if options.write_seeds:
        for target in targets:
            print(f"{target}: {write_seeds(target)} seeds")
        return 0
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("atheris is not installed: pip install -e '.[test]'", file=sys.stderr)
        return 2
    scratch = Path(tempfile.mkdtemp(prefix="abonent-fuzz-")) if options.ci else None
    failed = []
    try:
        for target in targets:
            work = (scratch / target if scratch else
                    (options.work / target if options.work else ROOT / "fuzz-work" / target))
            if not run(target, options.seconds, work, options.artifacts, options.timeout,
                       options.libfuzzer):
                failed.append(target)
            elif options.merge and not merge(target, work):
                failed.append(target)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    if failed:
        print(f"fuzzing failed (a crash, or the merge) in: {', '.join(failed)}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
