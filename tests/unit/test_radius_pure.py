"""Pure parts of the RADIUS server: wire codec, vendors, decisions, records."""

import datetime as dt
import hashlib
import os
import time

import pytest
from hypothesis import given, settings, strategies as st

from aaa import accounting
from aaa import packet as wire
from aaa.authorize import Subscriber, chap_valid, decide, normalize_mac, pap_valid
from aaa.client import accounting_request, access_request
from aaa.dictionary import encode
from aaa.vendors import Rate, rate_attributes
from rating.profile import ActiveOption

SECRET = b"s3cret"


def subscriber(**changes):
    values = dict(service_id=1, kind="pppoe", account_id=2, account_number="1", login="u", password="pw",
                  mac=None, circuit_id=None, static_ipv4=None, pool=None, account_state="active",
                  profile="normal", rate_down_kbps=100_000, rate_up_kbps=20_000,
                  negative_rate_kbps=512, version=1)
    values.update(changes)
    return Subscriber(**values)


@pytest.mark.parametrize("password", ["", "a", "x" * 16, "y" * 17, "ü" * 40])
def test_password_hiding_round_trips(password):
    authenticator = os.urandom(16)
    hidden = wire.encrypt_password(password.encode(), SECRET, authenticator)
    assert len(hidden) % 16 == 0 and len(hidden) >= 16
    assert wire.decrypt_password(hidden, SECRET, authenticator) == password.encode()


def test_request_decodes_and_authenticators_verify():
    request = wire.decode(access_request(SECRET, 9, "alice", "pw"))
    assert request.code == wire.ACCESS_REQUEST and request.identifier == 9
    assert request.text(wire.USER_NAME) == "alice"
    assert wire.message_authenticator_valid(request, SECRET)
    assert not wire.message_authenticator_valid(request, b"other")
    acct = wire.decode(accounting_request(SECRET, 1, [("Acct-Status-Type", "Start")]))
    assert wire.accounting_authenticator_valid(acct, SECRET)
    assert not wire.accounting_authenticator_valid(acct, b"other")


@pytest.mark.parametrize("data, reason", [
    (b"\x01\x01\x00", "shorter"),
    (b"\x01\x01\x00\x13" + bytes(16), "outside"),
    (b"\x01\x01\x00\x20" + bytes(16), "exceeds"),
    (b"\x01\x01\x00\x16" + bytes(16) + b"\x01\x01", "bad length"),
    (b"\x01\x01\x00\x17" + bytes(16) + b"\x01\x05\x00", "bad length"),
    (b"\x01\x01\x00\x15" + bytes(16) + b"\x01", "truncated"),
    (b"\x01\x01\x00\x18" + bytes(16) + b"\x50\x04\x00\x00", "Message-Authenticator"),
])
def test_malformed_packets_are_refused_with_a_reason(data, reason):
    with pytest.raises(wire.MalformedPacket, match=reason):
        wire.decode(data)


def test_vendor_specific_is_split_by_vendor_and_type():
    data = wire.encode_request(wire.ACCOUNTING_REQUEST, 1, SECRET,
                               encode("Mikrotik-Rate-Limit", "1k/2k"))
    assert wire.decode(data).vendor[(14988, 8)] == [b"1k/2k"]


@pytest.mark.parametrize("vendor, expected", [
    ("mikrotik", [("Mikrotik-Rate-Limit", "20000k/100000k")]),
    ("accel-ppp", [("Filter-Id", "100000/20000")]),
    ("huawei", [("Huawei-Input-Average-Rate", 20_000_000),
                ("Huawei-Output-Average-Rate", 100_000_000)]),
    ("juniper", [("ERX-Ingress-Policy-Name", "rate-20000k"),
                 ("ERX-Egress-Policy-Name", "rate-100000k")]),
    ("generic", []),
])
def test_vendor_rate_directions(vendor, expected):
    assert rate_attributes(vendor, Rate(down_kbps=100_000, up_kbps=20_000)) == expected


def test_cisco_polices_upload_in_and_shapes_download_out():
    pairs = rate_attributes("cisco", Rate(down_kbps=100_000, up_kbps=20_000))
    assert any("qos-policy-in" in v and "20000000" in v for _, v in pairs)
    assert any("qos-policy-out" in v and "100000000" in v for _, v in pairs)


def test_credentials():
    assert pap_valid(subscriber(), b"pw") and not pap_valid(subscriber(), b"pw2")
    challenge = os.urandom(16)
    chap = b"\x07" + hashlib.md5(b"\x07pw" + challenge).digest()
    assert chap_valid(subscriber(), chap, challenge)
    assert not chap_valid(subscriber(password="other"), chap, challenge)


@pytest.mark.parametrize("changes, accept, rate", [
    ({}, True, "20000k/100000k"),
    ({"options": (ActiveOption("t", "turbo", 2, dt.datetime(2020, 1, 1),
                               dt.datetime(2100, 1, 1)),)}, True, "40000k/200000k"),
    ({"profile": "throttled"}, True, "512k/512k"),
    ({"profile": "throttled", "negative_rate_kbps": 0}, False, None),
    ({"profile": "suspended"}, False, None),
    ({"account_state": "frozen"}, False, None),
])
def test_decide_by_profile(changes, accept, rate):
    decision = decide(subscriber(**changes), True, vendor="mikrotik", interim_interval=300)
    assert decision.accept is accept
    if rate:
        assert ("Mikrotik-Rate-Limit", rate) in decision.attributes
        assert ("Acct-Interim-Interval", 300) in decision.attributes


def test_decide_rejects_bad_password_and_unknown_user():
    assert decide(None, False, vendor="generic", interim_interval=0).reason == "unknown-user"
    assert decide(subscriber(), False, vendor="generic", interim_interval=0).reason == \
        "bad-password"


def test_accounting_record_folds_gigawords_and_delay():
    now = dt.datetime(2026, 1, 1, 12, 0, 0)
    request = wire.decode(accounting_request(SECRET, 1, [
        ("Acct-Status-Type", "Stop"), ("Acct-Session-Id", "abc"), ("User-Name", "u"),
        ("Acct-Input-Octets", 5), ("Acct-Input-Gigawords", 3), ("Acct-Output-Gigawords", 1),
        ("Acct-Delay-Time", 10), ("Acct-Session-Time", 50),
        ("Acct-Terminate-Cause", "Idle-Timeout"), ("Framed-IP-Address", "10.1.2.3")]))
    record = accounting.parse(request, 4, now)
    assert record.octets_in == 3 * 2**32 + 5 and record.octets_out == 2**32
    assert record.event_time == now - dt.timedelta(seconds=10)
    assert record.started_at == now - dt.timedelta(seconds=60)
    assert record.terminate_cause == "Idle-Timeout" and record.framed_ip == "10.1.2.3"


def test_accounting_record_needs_status_and_session_id():
    for pairs in ([("Acct-Session-Id", "x")], [("Acct-Status-Type", "Start")]):
        request = wire.decode(accounting_request(SECRET, 1, pairs))
        with pytest.raises(wire.MalformedPacket):
            accounting.parse(request, 1, dt.datetime(2026, 1, 1))


@pytest.mark.parametrize("text, mac", [
    ("AA-BB-CC-DD-EE-0F", "aa:bb:cc:dd:ee:0f"), ("aabb.ccdd.ee0f", "aa:bb:cc:dd:ee:0f"),
    ("aabbccddee0f", "aa:bb:cc:dd:ee:0f"), ("aa:bb:cc:dd:ee", None), ("zz:bb:cc:dd:ee:ff", None),
    ("", None), (None, None),
])
def test_normalize_mac(text, mac):
    assert normalize_mac(text) == mac


def test_pool_ranges():
    from aaa import pools
    parts = pools.parse_ranges("10.0.0.0/30, 10.0.1.5-10.0.1.6, 10.0.2.1/32")
    assert list(pools.addresses(parts)) == ["10.0.0.1", "10.0.0.2", "10.0.1.5", "10.0.1.6",
                                            "10.0.2.1"]
    assert pools.contains(parts, "10.0.1.6") and not pools.contains(parts, "10.0.1.7")
    for bad in ("", "10.0.0.300/24", "nonsense"):
        with pytest.raises(pools.PoolError):
            pools.parse_ranges(bad)


def test_mschap_primitives_match_published_vectors():
    from aaa import mschap
    assert mschap.md4(b"").hex() == "31d6cfe0d16ae931b73c59d7e0c089c0"  # RFC 1320 A.5
    assert mschap.md4(b"abc").hex() == "a448017aaf21d8525fc10ae87aa6729d"
    key, plain = bytes.fromhex("133457799BBCDFF1"), bytes.fromhex("0123456789ABCDEF")
    assert mschap.des_encrypt(key, plain).hex() == "85e813540f0ab405"


def test_mschapv2_rfc2759_vectors():
    from aaa import mschap
    # RFC 2759 §9.2.
    authenticator = bytes.fromhex("5B5D7C7D7B3F2F3E3C2C602132262628")
    peer = bytes.fromhex("21402324255E262A28295F2B3A337C7E")
    assert mschap.nt_password_hash("clientPass").hex() == "44ebba8d5312b8d611474411f56989ae"
    assert mschap.challenge_hash(peer, authenticator, "User").hex() == "d02e4386bce91226"
    response = mschap.nt_response(authenticator, peer, "User", "clientPass")
    assert response.hex() == "82309ecd8d708b5ea08faa3981cd83544233114a3d85d6df"
    assert mschap.authenticator_response("clientPass", response, peer, authenticator, "User") \
        == "S=407A5589115FD0D6209F510FE9C04566932CDA56"
    attribute = b"\x07\x00" + peer + bytes(8) + response
    assert mschap.verify("clientPass", "User", authenticator, attribute) == \
        (True, b"\x07S=407A5589115FD0D6209F510FE9C04566932CDA56")
    assert mschap.verify("wrong", "User", authenticator, attribute)[0] is False
    assert mschap.verify("clientPass", "User", authenticator, attribute[:49])[0] is False


def test_mppe_keys_rfc_3079_vectors():
    """RFC 3079 §3.5.3 (128-bit keys): the server's send key is the sample's
    SendStartKey128."""
    from aaa import mschap
    response = bytes.fromhex("82309ECD8D708B5EA08FAA3981CD83544233114A3D85D6DF")
    assert mschap.md4(mschap.nt_password_hash("clientPass")).hex() == \
        "41c00c584bd2d91c4017a2a12fa59f3f"
    send, receive = mschap.mppe_keys("clientPass", response)
    assert send.hex() == "8b7cdc149b993a1ba118cb153f56dccb"
    # The receive key: the same construction with the other magic string.
    master = bytes.fromhex("FDECE3717A8C838CB388E527AE3CDD31")
    magic = (b"On the client side, this is the send key; "
             b"on the server side, it is the receive key.")
    assert receive == hashlib.sha1(master + bytes(40) + magic + b"\xf2" * 40).digest()[:16]


@pytest.mark.parametrize("value", [b"", b"k" * 16, b"x" * 31, b"y" * 200])
def test_salt_encryption_rfc_2548(value):
    authenticator, salt = bytes(range(16)), b"\x85\x01"
    hidden = wire.salt_encrypt(value, SECRET, authenticator, salt)
    assert hidden[:2] == salt and (len(hidden) - 2) % 16 == 0
    assert len(hidden) - 2 >= len(value) + 1
    # The first block by hand: (length octet + value) XOR MD5(secret + authenticator + salt).
    plain = (bytes((len(value),)) + value + bytes(16))[:16]
    key = hashlib.md5(SECRET + authenticator + salt).digest()
    assert bytes(a ^ b for a, b in zip(hidden[2:18], key)) == plain
    assert wire.salt_decrypt(hidden, SECRET, authenticator) == value
    try:
        wrong = wire.salt_decrypt(hidden, SECRET, bytes(16))   # another request's
    except wire.MalformedPacket:
        wrong = None
    assert wrong != value
    with pytest.raises(ValueError):
        wire.salt_encrypt(value, SECRET, authenticator, b"\x05\x01")   # high bit clear


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=100), st.binary(max_size=300))
def test_hmac_md5_from_saved_states_equals_the_library(secret, message):
    """Secrets shorter and longer than MD5's 64-byte block, twice each (the
    saved states must not be consumed by the first use)."""
    import hmac

    for _ in range(2):
        assert wire.hmac_md5(secret, message) == hmac.digest(secret, message, "md5")


def test_password_keystream_matches_rfc_2865_by_hand():
    """User-Password hiding against MD5(secret + authenticator) spelled out."""
    secret, authenticator = b"s3cret", bytes(range(16))
    hidden = wire.encrypt_password(b"x" * 20, secret, authenticator)
    first = hashlib.md5(secret + authenticator).digest()
    assert bytes(a ^ b for a, b in zip(hidden[:16], first)) == b"x" * 16
    second = hashlib.md5(secret + hidden[:16]).digest()
    assert bytes(a ^ b for a, b in zip(hidden[16:], second)) == b"xxxx" + bytes(12)


def test_duplicate_cache_answers_within_the_window_and_stays_bounded():
    from aaa.server import DuplicateCache

    cache = DuplicateCache(window_s=30, limit=100)
    entries = {}
    for n in range(1000):
        key = ("10.0.0.1", 4, n & 0xFF, n.to_bytes(16, "big"))
        assert cache.get(key, b"raw%d" % n) is None
        entries[n] = cache.put(key, b"raw%d" % n, None)
        assert len(cache) <= 100
    last = ("10.0.0.1", 4, 999 & 0xFF, (999).to_bytes(16, "big"))
    assert cache.get(last, b"raw999") is True            # in flight
    entries[999][DuplicateCache.REPLY] = b"reply"
    assert cache.get(last, b"raw999") == b"reply"
    assert cache.get(last, b"other bytes") is None      # same key, new request
    assert cache.get(last, b"raw999") is None
    recent = [n for n in range(1000)
              if cache.get(("10.0.0.1", 4, n & 0xFF, n.to_bytes(16, "big")), b"raw%d" % n)]
    assert recent and min(recent) >= 900 - 1 and len(recent) >= 49
    expired = DuplicateCache(window_s=0, limit=100)
    expired.put(last, b"raw", b"reply")
    time.sleep(0.01)
    assert expired.get(last, b"raw") is None
