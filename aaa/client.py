"""A minimal RADIUS client: builds requests from (name, value) pairs.

Used by tests, benchmarks and the NAS simulator; the real peers (radclient)
are used by the integration tests as well, so this is not the only judge of
the server.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import selectors
import socket
import time

from aaa import packet as wire
from aaa.dictionary import encode, encode_all


def access_request(secret: bytes, identifier: int, username: str, password: str | None = None,
                   pairs=(), message_authenticator: bool = True,
                   authenticator: bytes | None = None) -> bytes:
    authenticator = authenticator or os.urandom(16)
    attributes = encode("User-Name", username)
    if password is not None:
        attributes += wire.attribute(wire.USER_PASSWORD, wire.encrypt_password(
            password.encode(), secret, authenticator))
    attributes += encode_all(pairs)
    return wire.encode_request(wire.ACCESS_REQUEST, identifier, secret, attributes,
                               authenticator=authenticator,
                               message_authenticator=message_authenticator)


def accounting_request(secret: bytes, identifier: int, pairs) -> bytes:
    return wire.encode_request(wire.ACCOUNTING_REQUEST, identifier, secret, encode_all(pairs))


def exchange(data: bytes, address: tuple[str, int], timeout: float = 2.0) -> bytes | None:
    """Send one datagram and wait for one reply (None on timeout)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(data, address)
        try:
            return sock.recvfrom(4096)[0]
        except socket.timeout:
            return None


def reply_valid(reply: bytes, request: bytes, secret: bytes) -> bool:
    """RFC 2865 §3 Response Authenticator check for a reply to ``request``."""
    expected = hashlib.md5(reply[:4] + request[4:20] + reply[20:] + secret).digest()
    return hmac.compare_digest(expected, reply[4:20]) and reply[1] == request[1]


def blast(requests: list[bytes], address: tuple[str, int], secret: bytes, *,
          retry_s: float = 0.5, deadline_s: float = 30.0) -> dict[int, bytes]:
    """Send many requests at once and collect a reply for each, resending the
    unanswered ones every ``retry_s`` as a NAS would.

    Request ``i`` must carry identifier ``i % 256``; it travels on socket
    ``i // 256`` so that (socket, identifier) names it. Returns {i: reply}."""
    count = len(requests)
    sockets = []
    for _ in range((count + 255) // 256):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.setblocking(False)
        sockets.append(sock)
    selector = selectors.DefaultSelector()
    for number, sock in enumerate(sockets):
        selector.register(sock, selectors.EVENT_READ, number)
    replies: dict[int, bytes] = {}
    give_up = time.monotonic() + deadline_s
    try:
        while len(replies) < count and time.monotonic() < give_up:
            for index, request in enumerate(requests):
                if index not in replies:
                    try:
                        sockets[index // 256].sendto(request, address)
                    except BlockingIOError:
                        pass
            resend_at = time.monotonic() + retry_s
            while len(replies) < count:
                left = resend_at - time.monotonic()
                if left <= 0:
                    break
                for key, _ in selector.select(left):
                    while True:
                        try:
                            data = key.fileobj.recv(4096)
                        except BlockingIOError:
                            break
                        if len(data) >= 20:
                            index = key.data * 256 + data[1]
                            if index < count and reply_valid(data, requests[index], secret):
                                replies.setdefault(index, data)
    finally:
        selector.close()
        for sock in sockets:
            sock.close()
    return replies



def send_windowed(requests: list[bytes], address: tuple[str, int], secret: bytes, *,
                  window: int = 256, retry_s: float = 2.0, deadline_s: float = 300.0,
                  twice: frozenset[int] = frozenset()) -> dict[int, bytes]:
    """``blast`` as a NAS in a storm sends: at most ``window`` requests
    unanswered at a time, each unanswered one sent again (the same bytes)
    after ``retry_s``. Requests in ``twice`` go out twice back to back (a
    retransmit that crosses the answer). Request ``i`` must carry identifier
    ``i % 256``; it travels on socket ``i // 256``. Returns {i: reply}."""
    count = len(requests)
    sockets = []
    selector = selectors.DefaultSelector()
    replies: dict[int, bytes] = {}
    in_flight: dict[int, float] = {}
    following = 0
    give_up = time.monotonic() + deadline_s
    try:
        for number in range((count + 255) // 256):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            sock.setblocking(False)
            sockets.append(sock)
            selector.register(sock, selectors.EVENT_READ, number)

        def send(index: int) -> None:
            try:
                sockets[index // 256].sendto(requests[index], address)
                if index in twice:
                    sockets[index // 256].sendto(requests[index], address)
            except BlockingIOError:
                pass    # sent again after retry_s
            in_flight[index] = time.monotonic()

        while len(replies) < count and time.monotonic() < give_up:
            while following < count and len(in_flight) < window:
                send(following)
                following += 1
            for key, _ in selector.select(0.05):
                while True:
                    try:
                        data = key.fileobj.recv(4096)
                    except BlockingIOError:
                        break
                    if len(data) < 20:
                        continue
                    index = key.data * 256 + data[1]
                    if index in in_flight and reply_valid(data, requests[index], secret):
                        replies[index] = data
                        del in_flight[index]
            now = time.monotonic()
            for index, sent_at in list(in_flight.items()):
                if now - sent_at > retry_s:
                    send(index)
    finally:
        selector.close()
        for sock in sockets:
            sock.close()
    return replies
