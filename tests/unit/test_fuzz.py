"""The fuzz targets without atheris: their corpora replay clean, and their
contract checks do catch a decoder that breaks its contract (a target that
only calls the code would pass these corpora and catch nothing)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz import TARGETS, ContractViolation, corpus_files, load

ROOT = Path(__file__).resolve().parents[2]
PURE = ("radius_packet", "netflow")


@pytest.fixture(scope="module")
def one_input():
    made = {}

    def get(name):
        if name not in made:
            made[name] = load(name).setup()
        return made[name]
    return get


@pytest.mark.parametrize("target", PURE)
def test_the_corpus_replays_without_a_contract_broken(target, one_input):
    files = corpus_files(target)
    assert len(files) >= 5, f"the {target} corpus lost its seeds"
    run = one_input(target)
    for path in files:
        run(path.read_bytes())


@pytest.mark.parametrize("target", TARGETS)
def test_every_seed_is_in_the_corpus(target):
    """The seeds are real packets and form values built by the project's
    encoders; ``bench/fuzz.py --write-seeds`` writes them."""
    names = {p.name for p in corpus_files(target)}
    missing = {f"seed-{name}" for name in load(target).seeds()} - names
    assert not missing, f"run python bench/fuzz.py {target} --write-seeds: {sorted(missing)}"


def test_radius_target_catches_a_decoder_that_accepts_a_bad_length(one_input, monkeypatch):
    from aaa import packet as wire

    run = one_input("radius_packet")
    good = (ROOT / "tests/fuzz/corpus/radius_packet/seed-pap").read_bytes()
    # Message-Authenticator of 15 octets: MalformedPacket is the contract.
    bad = bytearray(good[:20] + bytes((80, 17)) + bytes(15))
    bad[2:4] = len(bad).to_bytes(2, "big")
    run(bytes(bad))
    original = wire.decode

    def lenient(data):
        try:
            return original(data)
        except wire.MalformedPacket:  # "be liberal": keep the header, skip the rest
            return wire.Packet(data[0], data[1], data[4:20], data[:20])
    monkeypatch.setattr(wire, "decode", lenient)
    with pytest.raises(ContractViolation, match="accepted a malformed packet"):
        run(bytes(bad))


def test_radius_target_catches_an_attribute_lost(one_input, monkeypatch):
    from aaa import packet as wire

    run = one_input("radius_packet")
    good = (ROOT / "tests/fuzz/corpus/radius_packet/seed-acct_stop").read_bytes()
    original = wire.decode

    def forgetful(data):
        packet = original(data)
        packet.attributes.pop(max(packet.attributes), None)
        return packet
    monkeypatch.setattr(wire, "decode", forgetful)
    with pytest.raises(ContractViolation, match="attributes differ"):
        run(good)


def test_radius_target_lets_an_unexpected_exception_through(one_input, monkeypatch):
    from aaa import packet as wire

    def broken(data):
        raise IndexError("index out of range")
    monkeypatch.setattr(wire, "decode", broken)
    with pytest.raises(IndexError):
        one_input("radius_packet")(bytes(20))


def test_netflow_target_catches_books_that_drift(one_input, monkeypatch):
    from collector.decode import Decoder

    run = one_input("netflow")
    seed = (ROOT / "tests/fuzz/corpus/netflow/seed-v9_data_before_template").read_bytes()
    run(seed)
    original = Decoder._hold

    def forgetful(self, key, body, context, now):
        original(self, key, body, context, now)
        self.held_bytes -= 1   # a bookkeeping slip the collector would never notice
    monkeypatch.setattr(Decoder, "_hold", forgetful)
    with pytest.raises(ContractViolation, match="held_bytes"):
        run(seed)


def test_netflow_target_catches_a_flow_counted_twice(one_input, monkeypatch):
    from collector.rollup import ReplayGuard

    run = one_input("netflow")
    seed = (ROOT / "tests/fuzz/corpus/netflow/seed-v5").read_bytes()
    monkeypatch.setattr(ReplayGuard, "remember", lambda self, keys: None)
    with pytest.raises(ContractViolation, match="replayed"):
        run(seed)


def test_the_runner_explains_itself_and_replays_inputs(tmp_path):
    command = [sys.executable, str(ROOT / "bench" / "fuzz.py")]
    help_text = subprocess.run(command + ["--help"], capture_output=True, text=True,
                               check=True).stdout
    assert "--seconds" in help_text and "radius_server" in help_text
    refused = subprocess.run(command + ["no_such_target"], capture_output=True, text=True)
    assert refused.returncode == 2 and "unknown: no_such_target" in refused.stderr
    good = tmp_path / "good"
    good.write_bytes((ROOT / "tests/fuzz/corpus/radius_packet/seed-pap").read_bytes())
    assert subprocess.run(command + ["radius_packet", "--replay", str(good)],
                          capture_output=True).returncode == 0


def test_the_runner_reads_libfuzzer_status_lines():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import fuzz as runner
    finally:
        sys.path.remove(str(ROOT / "bench"))
    log = ("#2\tINITED cov: 10 ft: 12 corp: 3/90b exec/s: 0 rss: 60Mb\n"
           "#4096\tpulse  cov: 190 ft: 396 corp: 69/7930b lim: 527 exec/s: 21845 rss: 72Mb\n"
           "Done 115132 runs in 31 second(s)\n")
    assert runner._summary(log) == dict(runs=115132, cov=190, ft=396, corpus=69)
