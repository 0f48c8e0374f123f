"""The cached-Accept path for Access-Requests.

Most Access-Requests a busy server sees are PAP logins of subscribers whose
Accept it has decided before (a BRAS re-authenticating, a reboot's storm).
For those, ``aaa.server.handle_auth`` spends ~25 µs of Python on work whose
outcome is known: decoding, checking Message-Authenticator, decrypting the
password, looking up the subscriber and the decision, signing the reply.
``aaa._fastauth.accept`` does it in one C call from a table the Python path
fills as it answers (``learn``); whatever that call does not answer (another
code, CHAP, Proxy-State, a wrong password or signature, an unknown or
expired name, a malformed packet) goes down the Python path unchanged, so
the fast path can only ever give the answer the Python path gives.

The table holds, per NAS client object, User-Name octets -> (password,
reply attributes, expires, until). An entry lives no longer than what it
was made from:

- the directory's view of the login (``SubscriberDirectory.generation``
  moves whenever a view is replaced or dropped, and the whole table goes;
  ``expires``, monotonic, is the view's TTL);
- the decision (``until``, its ``valid_until`` as a time.time() stamp: a
  speed window or an option ending);
- the NAS client (a table is only used for the object it was made for; the
  NAS table's re-read keeps an unchanged NAS's object and makes a new one
  for a changed NAS).

Without the compiled module (no C compiler at install) ``available`` is
False and the server answers every request on the Python path.
``radius.fast_path = false`` turns it off.
"""

from __future__ import annotations

import math
import time

try:
    from aaa import _fastauth
except ImportError:     # built optionally (setup.py)
    _fastauth = None

available = _fastauth is not None
if available:
    # recvmmsg / sendmmsg for the receive loops (aaa.server._receive_loop).
    receive, send = _fastauth.receive, _fastauth.send
    # A plain Start, Stop or Interim-Update: its reply and fields, or None
    # (aaa.server.handle_acct; aaa.accounting.parse_fields).
    accounting = _fastauth.accounting


class FastAccepts:
    def __init__(self, directory, limit: int = 200_000):
        self._directory = directory
        self._limit = limit
        # (directory generation, {id(client): (client, {User-Name octets:
        # (password, attributes, expires, until)})}), replaced whole: a
        # thread that read the state before the generation moved and
        # remembers into it afterwards writes into a table no one reads.
        self._state: tuple[int, dict] = (directory.generation, {})
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def clear(self) -> None:
        self._state = (self._directory.generation, {})
        self._size = 0

    def answer(self, data: bytes, client, now: float) -> bytes | None:
        """The Accept for ``data`` if the table knows it, else None; ``now``
        is time.monotonic()."""
        generation, tables = self._state
        if generation != self._directory.generation:
            self.clear()
            return None
        held = tables.get(id(client))
        if held is None or held[0] is not client:
            return None
        return _fastauth.accept(data, client.secret, held[1], now, time.time())

    def learn(self, client, generation: int, username: bytes, password: bytes,
              attributes: bytes, expires: float, until: float | None) -> None:
        """Remember an Accept the Python path gave. ``generation`` is the
        directory's when that path read the subscriber (a view replaced
        since must not be remembered); the entry ends at ``expires``
        (monotonic: the view's TTL) or at ``until`` (time.time(): the
        decision's end), whichever comes first."""
        state = self._state
        if generation != state[0] or generation != self._directory.generation:
            return
        if self._size >= self._limit:
            self.clear()
            return
        tables = state[1]
        held = tables.get(id(client))
        if held is None or held[0] is not client:
            held = tables[id(client)] = (client, {})
        table = held[1]
        if username not in table:
            self._size += 1
        table[username] = (password, attributes, float(expires),
                           math.inf if until is None else float(until))
