"""A test SMSC on loopback speaking SMPP 3.4 (written here, from the spec).

It answers bind_transceiver (checking system_id and password),
submit_sm (submit_sm_resp with a message id of its own), enquire_link and
unbind, and, for each submit that asked for one, sends a delivery receipt
(deliver_sm, esm_class 0x04, receipted_message_id and message_state TLVs,
the classic "id:… stat:DELIVRD" text). It keeps every submit_sm it took, so
a test can reassemble concatenated parts (UDH 05 00 03 ref total seq).

Knobs: ``delay_resp`` (seconds before a submit_sm_resp, per sequence of
submits: the nth submit waits ``delay_resp.get(n)``), ``status_for``
(destination -> an error status), ``receipt_stat`` (DELIVRD, UNDELIV…).
"""

from __future__ import annotations

import socket
import struct
import threading
import time

BIND_TRANSCEIVER, BIND_TRANSCEIVER_RESP = 0x00000009, 0x80000009
SUBMIT_SM, SUBMIT_SM_RESP = 0x00000004, 0x80000004
DELIVER_SM, DELIVER_SM_RESP = 0x00000005, 0x80000005
ENQUIRE_LINK, ENQUIRE_LINK_RESP = 0x00000015, 0x80000015
UNBIND, UNBIND_RESP = 0x00000006, 0x80000006
GENERIC_NACK = 0x80000000
ESME_RINVPASWD = 0x0000000E


def _cstring(data: bytes, at: int) -> tuple[bytes, int]:
    end = data.index(b"\0", at)
    return data[at:end], end + 1


def parse_submit(body: bytes) -> dict:
    at = 0
    service_type, at = _cstring(body, at)
    source_ton, source_npi = body[at], body[at + 1]
    source, at = _cstring(body, at + 2)
    dest_ton, dest_npi = body[at], body[at + 1]
    destination, at = _cstring(body, at + 2)
    esm_class, protocol_id, priority = body[at], body[at + 1], body[at + 2]
    _schedule, at = _cstring(body, at + 3)
    _validity, at = _cstring(body, at)
    registered_delivery, _replace, data_coding, _default_id, length = body[at:at + 5]
    short_message = body[at + 5:at + 5 + length]
    return dict(source=source.decode(), source_ton=source_ton, destination=destination.decode(),
                dest_ton=dest_ton, esm_class=esm_class, registered_delivery=registered_delivery,
                data_coding=data_coding, short_message=short_message)


def decode_text(submits: list[dict]) -> str:
    """The text of one message from its submits (concatenated parts in order)."""
    chunks = []
    for submit in submits:
        data = submit["short_message"]
        number = 1
        if submit["esm_class"] & 0x40:  # UDHI: a user data header comes first
            header_length = data[0]
            header = data[1:1 + header_length]
            assert header[0] == 0x00 and header[1] == 3, header  # 8-bit concatenation IE
            number = header[4]
            data = data[1 + header_length:]
        chunks.append((number, data, submit["data_coding"]))
    chunks.sort()
    raw = b"".join(chunk for _, chunk, _ in chunks)
    coding = chunks[0][2]
    return raw.decode("utf-16-be") if coding == 8 else raw.decode("ascii")


class FakeSmsc:
    def __init__(self, system_id: str = "abonent", password: str = "s3cret",
                 receipts: bool = True):
        self.system_id, self.password, self.receipts = system_id, password, receipts
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.submits: list[dict] = []
        self.binds: list[tuple[str, str]] = []
        self.enquire_links = 0
        self.delay_resp: dict[int, float] = {}
        self.status_for: dict[str, int] = {}
        self.receipt_stat = "DELIVRD"
        self.receipts_acked = 0
        self._lock = threading.Lock()
        self._next_id = 1000
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)

    # -- plumbing
    def _accept(self):
        self.listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except (socket.timeout, OSError):
                continue
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    @staticmethod
    def _recv(conn, size: int) -> bytes:
        data = b""
        while len(data) < size:
            part = conn.recv(size - len(data))
            if not part:
                raise ConnectionError
            data += part
        return data

    def _serve(self, conn: socket.socket):
        send_lock = threading.Lock()
        out_sequence = [0x7000_0000]

        def send(command, status, sequence, body=b""):
            with send_lock:
                conn.sendall(struct.pack(">IIII", 16 + len(body), command, status, sequence)
                             + body)

        def receipt(message_id: str, submit: dict):
            now = time.strftime("%y%m%d%H%M")
            text = (f"id:{message_id} sub:001 dlvr:001 submit date:{now} done date:{now} "
                    f"stat:{self.receipt_stat} err:000 text:").encode()
            state = 2 if self.receipt_stat == "DELIVRD" else 5
            body = (b"\0" + bytes([1, 1]) + submit["destination"].encode() + b"\0"
                    + bytes([5, 0]) + submit["source"].encode() + b"\0"
                    + bytes([0x04, 0, 0]) + b"\0" + b"\0" + bytes([0, 0, 0, 0, len(text)])
                    + text
                    + struct.pack(">HH", 0x001E, len(message_id) + 1) + message_id.encode()
                    + b"\0" + struct.pack(">HHB", 0x0427, 1, state))
            with send_lock:
                out_sequence[0] += 1
                sequence = out_sequence[0]
            send(DELIVER_SM, 0, sequence, body)

        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(0.5)
            while not self._stop.is_set():
                try:
                    header = self._recv(conn, 16)
                except socket.timeout:
                    continue
                length, command, _status, sequence = struct.unpack(">IIII", header)
                conn.settimeout(5)
                body = self._recv(conn, length - 16) if length > 16 else b""
                conn.settimeout(0.5)
                if command == BIND_TRANSCEIVER:
                    system_id, at = _cstring(body, 0)
                    password, at = _cstring(body, at)
                    self.binds.append((system_id.decode(), password.decode()))
                    ok = (system_id.decode(), password.decode()) == (self.system_id,
                                                                    self.password)
                    send(BIND_TRANSCEIVER_RESP, 0 if ok else ESME_RINVPASWD, sequence,
                         b"fakesmsc\0")
                elif command == SUBMIT_SM:
                    submit = parse_submit(body)
                    with self._lock:
                        self.submits.append(submit)
                        number = len(self.submits)
                        self._next_id += 1
                        message_id = f"M{self._next_id:08X}"
                    status = self.status_for.get(submit["destination"], 0)
                    delay = self.delay_resp.get(number, 0)

                    def answer(sequence=sequence, message_id=message_id, submit=submit,
                               status=status, delay=delay):
                        if delay:
                            time.sleep(delay)
                        try:
                            send(SUBMIT_SM_RESP, status, sequence,
                                 (message_id if status == 0 else "").encode() + b"\0")
                            if status == 0 and self.receipts and submit["registered_delivery"]:
                                receipt(message_id, submit)
                        except OSError:
                            pass
                    if delay:
                        threading.Thread(target=answer, daemon=True).start()
                    else:
                        answer()
                elif command == DELIVER_SM_RESP:
                    self.receipts_acked += 1
                elif command == ENQUIRE_LINK:
                    self.enquire_links += 1
                    send(ENQUIRE_LINK_RESP, 0, sequence)
                elif command == UNBIND:
                    send(UNBIND_RESP, 0, sequence)
                    break
                elif command & 0x80000000:
                    continue
                else:
                    send(GENERIC_NACK, 0x00000003, sequence)
        except (ConnectionError, OSError):
            pass
        finally:
            conn.close()

    def messages_to(self, destination: str) -> list[dict]:
        return [s for s in self.submits if s["destination"] == destination]

    def close(self):
        self._stop.set()
        self.listener.close()
        for thread in self._threads:
            thread.join(timeout=2)
