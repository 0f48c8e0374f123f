"""MS-CHAPv2 (RFC 2759) verification, with the MD4 and DES it needs.

OpenSSL 3 no longer offers MD4 by default and the standard library has no
DES, so both are written here from RFC 1320 and FIPS 46-3. They are used
only to check MS-CHAPv2 responses (a legacy protocol whose strength does
not rest on them any more); the RFC 2759 §9.2 test vectors in the tests pin
them down.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

# -- MD4, RFC 1320 ---------------------------------------------------------------

_MASK = 0xFFFFFFFF


def _rotl(value: int, shift: int) -> int:
    value &= _MASK
    return ((value << shift) | (value >> (32 - shift))) & _MASK


def md4(data: bytes) -> bytes:
    length_bits = (len(data) * 8) & 0xFFFFFFFFFFFFFFFF
    data = data + b"\x80" + b"\x00" * ((55 - len(data)) % 64) + struct.pack("<Q", length_bits)
    a, b, c, d = 0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476
    for offset in range(0, len(data), 64):
        x = struct.unpack("<16I", data[offset:offset + 64])
        aa, bb, cc, dd = a, b, c, d
        for k in range(16):
            shift = (3, 7, 11, 19)[k % 4]
            f = (b & c) | (~b & d)
            a, b, c, d = d, _rotl(a + f + x[k], shift), b, c
        for i, k in enumerate((0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15)):
            shift = (3, 5, 9, 13)[i % 4]
            g = (b & c) | (b & d) | (c & d)
            a, b, c, d = d, _rotl(a + g + x[k] + 0x5A827999, shift), b, c
        for i, k in enumerate((0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15)):
            shift = (3, 9, 11, 15)[i % 4]
            h = b ^ c ^ d
            a, b, c, d = d, _rotl(a + h + x[k] + 0x6ED9EBA1, shift), b, c
        a, b, c, d = (a + aa) & _MASK, (b + bb) & _MASK, (c + cc) & _MASK, (d + dd) & _MASK
    return struct.pack("<4I", a, b, c, d)


# -- DES, FIPS 46-3 (encryption of one block) -------------------------------------

_IP = (58, 50, 42, 34, 26, 18, 10, 2, 60, 52, 44, 36, 28, 20, 12, 4,
       62, 54, 46, 38, 30, 22, 14, 6, 64, 56, 48, 40, 32, 24, 16, 8,
       57, 49, 41, 33, 25, 17, 9, 1, 59, 51, 43, 35, 27, 19, 11, 3,
       61, 53, 45, 37, 29, 21, 13, 5, 63, 55, 47, 39, 31, 23, 15, 7)
_FP = (40, 8, 48, 16, 56, 24, 64, 32, 39, 7, 47, 15, 55, 23, 63, 31,
       38, 6, 46, 14, 54, 22, 62, 30, 37, 5, 45, 13, 53, 21, 61, 29,
       36, 4, 44, 12, 52, 20, 60, 28, 35, 3, 43, 11, 51, 19, 59, 27,
       34, 2, 42, 10, 50, 18, 58, 26, 33, 1, 41, 9, 49, 17, 57, 25)
_E = (32, 1, 2, 3, 4, 5, 4, 5, 6, 7, 8, 9, 8, 9, 10, 11, 12, 13, 12, 13, 14, 15, 16, 17,
      16, 17, 18, 19, 20, 21, 20, 21, 22, 23, 24, 25, 24, 25, 26, 27, 28, 29, 28, 29, 30, 31,
      32, 1)
_P = (16, 7, 20, 21, 29, 12, 28, 17, 1, 15, 23, 26, 5, 18, 31, 10,
      2, 8, 24, 14, 32, 27, 3, 9, 19, 13, 30, 6, 22, 11, 4, 25)
_PC1 = (57, 49, 41, 33, 25, 17, 9, 1, 58, 50, 42, 34, 26, 18,
        10, 2, 59, 51, 43, 35, 27, 19, 11, 3, 60, 52, 44, 36,
        63, 55, 47, 39, 31, 23, 15, 7, 62, 54, 46, 38, 30, 22,
        14, 6, 61, 53, 45, 37, 29, 21, 13, 5, 28, 20, 12, 4)
_PC2 = (14, 17, 11, 24, 1, 5, 3, 28, 15, 6, 21, 10, 23, 19, 12, 4, 26, 8, 16, 7, 27, 20, 13, 2,
        41, 52, 31, 37, 47, 55, 30, 40, 51, 45, 33, 48, 44, 49, 39, 56, 34, 53, 46, 42, 50, 36,
        29, 32)
_SHIFTS = (1, 1, 2, 2, 2, 2, 2, 2, 1, 2, 2, 2, 2, 2, 2, 1)
_S = (
    (14, 4, 13, 1, 2, 15, 11, 8, 3, 10, 6, 12, 5, 9, 0, 7,
     0, 15, 7, 4, 14, 2, 13, 1, 10, 6, 12, 11, 9, 5, 3, 8,
     4, 1, 14, 8, 13, 6, 2, 11, 15, 12, 9, 7, 3, 10, 5, 0,
     15, 12, 8, 2, 4, 9, 1, 7, 5, 11, 3, 14, 10, 0, 6, 13),
    (15, 1, 8, 14, 6, 11, 3, 4, 9, 7, 2, 13, 12, 0, 5, 10,
     3, 13, 4, 7, 15, 2, 8, 14, 12, 0, 1, 10, 6, 9, 11, 5,
     0, 14, 7, 11, 10, 4, 13, 1, 5, 8, 12, 6, 9, 3, 2, 15,
     13, 8, 10, 1, 3, 15, 4, 2, 11, 6, 7, 12, 0, 5, 14, 9),
    (10, 0, 9, 14, 6, 3, 15, 5, 1, 13, 12, 7, 11, 4, 2, 8,
     13, 7, 0, 9, 3, 4, 6, 10, 2, 8, 5, 14, 12, 11, 15, 1,
     13, 6, 4, 9, 8, 15, 3, 0, 11, 1, 2, 12, 5, 10, 14, 7,
     1, 10, 13, 0, 6, 9, 8, 7, 4, 15, 14, 3, 11, 5, 2, 12),
    (7, 13, 14, 3, 0, 6, 9, 10, 1, 2, 8, 5, 11, 12, 4, 15,
     13, 8, 11, 5, 6, 15, 0, 3, 4, 7, 2, 12, 1, 10, 14, 9,
     10, 6, 9, 0, 12, 11, 7, 13, 15, 1, 3, 14, 5, 2, 8, 4,
     3, 15, 0, 6, 10, 1, 13, 8, 9, 4, 5, 11, 12, 7, 2, 14),
    (2, 12, 4, 1, 7, 10, 11, 6, 8, 5, 3, 15, 13, 0, 14, 9,
     14, 11, 2, 12, 4, 7, 13, 1, 5, 0, 15, 10, 3, 9, 8, 6,
     4, 2, 1, 11, 10, 13, 7, 8, 15, 9, 12, 5, 6, 3, 0, 14,
     11, 8, 12, 7, 1, 14, 2, 13, 6, 15, 0, 9, 10, 4, 5, 3),
    (12, 1, 10, 15, 9, 2, 6, 8, 0, 13, 3, 4, 14, 7, 5, 11,
     10, 15, 4, 2, 7, 12, 9, 5, 6, 1, 13, 14, 0, 11, 3, 8,
     9, 14, 15, 5, 2, 8, 12, 3, 7, 0, 4, 10, 1, 13, 11, 6,
     4, 3, 2, 12, 9, 5, 15, 10, 11, 14, 1, 7, 6, 0, 8, 13),
    (4, 11, 2, 14, 15, 0, 8, 13, 3, 12, 9, 7, 5, 10, 6, 1,
     13, 0, 11, 7, 4, 9, 1, 10, 14, 3, 5, 12, 2, 15, 8, 6,
     1, 4, 11, 13, 12, 3, 7, 14, 10, 15, 6, 8, 0, 5, 9, 2,
     6, 11, 13, 8, 1, 4, 10, 7, 9, 5, 0, 15, 14, 2, 3, 12),
    (13, 2, 8, 4, 6, 15, 11, 1, 10, 9, 3, 14, 5, 0, 12, 7,
     1, 15, 13, 8, 10, 3, 7, 4, 12, 5, 6, 11, 0, 14, 9, 2,
     7, 11, 4, 1, 9, 12, 14, 2, 0, 6, 10, 13, 15, 3, 5, 8,
     2, 1, 14, 7, 4, 10, 8, 13, 15, 12, 9, 0, 3, 5, 6, 11),
)


def _permute(value: int, table, width: int) -> int:
    """Bit i of the result (from the left, 1-based) is bit table[i] of value."""
    result = 0
    for position in table:
        result = (result << 1) | ((value >> (width - position)) & 1)
    return result


def _subkeys(key: int) -> list[int]:
    permuted = _permute(key, _PC1, 64)
    left, right = permuted >> 28, permuted & 0xFFFFFFF
    keys = []
    for shift in _SHIFTS:
        left = ((left << shift) | (left >> (28 - shift))) & 0xFFFFFFF
        right = ((right << shift) | (right >> (28 - shift))) & 0xFFFFFFF
        keys.append(_permute((left << 28) | right, _PC2, 56))
    return keys


def _feistel(half: int, subkey: int) -> int:
    mixed = _permute(half, _E, 32) ^ subkey
    out = 0
    for box in range(8):
        six = (mixed >> (42 - 6 * box)) & 0x3F
        row = ((six & 0x20) >> 4) | (six & 1)
        column = (six >> 1) & 0xF
        out = (out << 4) | _S[box][row * 16 + column]
    return _permute(out, _P, 32)


def des_encrypt(key8: bytes, block: bytes) -> bytes:
    value = _permute(int.from_bytes(block, "big"), _IP, 64)
    left, right = value >> 32, value & _MASK
    for subkey in _subkeys(int.from_bytes(key8, "big")):
        left, right = right, left ^ _feistel(right, subkey)
    return _permute((right << 32) | left, _FP, 64).to_bytes(8, "big")


def _expand_key(key7: bytes) -> bytes:
    """56 key bits → 8 octets of 7 bits each (the low parity bit unused)."""
    bits = int.from_bytes(key7, "big")
    return bytes(((bits >> (49 - 7 * i)) & 0x7F) << 1 for i in range(8))


# -- MS-CHAPv2, RFC 2759 ---------------------------------------------------------

_MAGIC1 = b"Magic server to client signing constant"
_MAGIC2 = b"Pad to make it do more than one iteration"


def nt_password_hash(password: str) -> bytes:
    return md4(password.encode("utf-16-le"))


def challenge_hash(peer_challenge: bytes, authenticator_challenge: bytes,
                   username: str) -> bytes:
    # RFC 2759 §8.2: the user name without any domain ("DOMAIN\\user").
    name = username.rsplit("\\", 1)[-1].encode()
    return hashlib.sha1(peer_challenge + authenticator_challenge + name).digest()[:8]


def challenge_response(challenge: bytes, password_hash: bytes) -> bytes:
    padded = password_hash + bytes(5)
    return b"".join(des_encrypt(_expand_key(padded[i:i + 7]), challenge) for i in (0, 7, 14))


def nt_response(authenticator_challenge: bytes, peer_challenge: bytes, username: str,
                password: str) -> bytes:
    challenge = challenge_hash(peer_challenge, authenticator_challenge, username)
    return challenge_response(challenge, nt_password_hash(password))


def authenticator_response(password: str, response: bytes, peer_challenge: bytes,
                           authenticator_challenge: bytes, username: str) -> str:
    hash_hash = md4(nt_password_hash(password))
    digest = hashlib.sha1(hash_hash + response + _MAGIC1).digest()
    challenge = challenge_hash(peer_challenge, authenticator_challenge, username)
    return "S=" + hashlib.sha1(digest + challenge + _MAGIC2).hexdigest().upper()


def verify(password: str, username: str, authenticator_challenge: bytes,
           chap2_response: bytes) -> tuple[bool, bytes]:
    """Check an MS-CHAP2-Response attribute (ident, flags, peer challenge,
    reserved, NT-Response: 50 octets). Returns (valid, MS-CHAP2-Success
    value to send when valid)."""
    if len(chap2_response) != 50 or len(authenticator_challenge) != 16:
        return False, b""
    ident = chap2_response[:1]
    peer_challenge = chap2_response[2:18]
    received = chap2_response[26:50]
    expected = nt_response(authenticator_challenge, peer_challenge, username, password)
    if not hmac.compare_digest(expected, received):
        return False, b""
    success = authenticator_response(password, received, peer_challenge,
                                     authenticator_challenge, username)
    return True, ident + success.encode()


# -- MPPE keys, RFC 3079 -----------------------------------------------------------

_MPPE_MASTER = b"This is the MPPE Master Key"
_CLIENT_SENDS = (b"On the client side, this is the send key; "
                 b"on the server side, it is the receive key.")
_CLIENT_RECEIVES = (b"On the client side, this is the receive key; "
                    b"on the server side, it is the send key.")


def mppe_keys(password: str, nt_response: bytes) -> tuple[bytes, bytes]:
    """The server's (the NAS's) 128-bit MPPE start keys after MS-CHAPv2,
    RFC 3079 §3.4: (send key, receive key)."""
    hash_hash = md4(nt_password_hash(password))
    master = hashlib.sha1(hash_hash + nt_response + _MPPE_MASTER).digest()[:16]

    def start_key(magic: bytes) -> bytes:
        return hashlib.sha1(master + bytes(40) + magic + b"\xf2" * 40).digest()[:16]

    return start_key(_CLIENT_RECEIVES), start_key(_CLIENT_SENDS)
