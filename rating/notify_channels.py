"""The gateways: SMS over SMPP 3.4 (smpplib) and Telegram's Bot API
(python-telegram-bot). E-mail is rating.notify.EmailChannel.

Secrets: the SMPP password travels in bind_transceiver and the bot token in
every Bot API address. smpplib logs whole PDUs in hex at DEBUG, PTB logs its
address at DEBUG and httpx logs every request address at INFO; those
loggers are held at WARNING here, and nothing of ours logs either secret.
"""

from __future__ import annotations

import asyncio
import logging
import re
import select
import socket
import threading
import time
import uuid

import smpplib.client
import smpplib.consts
import smpplib.exceptions
import smpplib.gsm
import smpplib.smpp

from rating.notify import ChannelError, GatewayEvent, SendResult, SubmitTimeout

log = logging.getLogger(__name__)

for _name in ("smpp", "smpplib", "httpx", "httpcore", "telegram"):
    logging.getLogger(_name).setLevel(logging.WARNING)

# submit_sm_resp statuses worth trying again later (the SMSC is busy, or
# throttles us); every other error status refuses the message for good.
_TRANSIENT = {0x14, 0x58, 0x08, 0x64, 0x45}   # queue full, throttled, system error, …
_RECEIPT_STAT = re.compile(r"stat:(\w+)")
_RECEIPT_ID = re.compile(r"id:(\S+)")


class RateLimiter:
    """At most ``rate`` events a second, evenly spaced (0: no limit); time
    lost to other work (a database commit) may be made up by at most
    ``slack`` seconds' worth of events at once, so in any window of T
    seconds at most rate x (T + slack) + 1 go."""

    def __init__(self, rate: float, slack: float = 0.05):
        self.interval = 1.0 / rate if rate and rate > 0 else 0.0
        self.slack = slack
        self.next_at = 0.0

    def wait(self) -> None:
        if not self.interval:
            return
        now = time.monotonic()
        if self.next_at > now:
            time.sleep(self.next_at - now)
            now = self.next_at
        self.next_at = max(self.next_at, now - self.slack) + self.interval


class SmppChannel:
    """One transceiver bind to the SMSC, kept open between messages.

    A message is split by smpplib.gsm.make_parts: GSM 7-bit (data_coding 0)
    when every character has one, else UCS-2 (data_coding 8), and when too
    long for one SMS into parts with a concatenation UDH (esm_class 0x40).
    Every part asks for a delivery receipt (registered_delivery 1). The
    receipts (deliver_sm, esm_class 0x04) come back on this bind at any
    time and are handed to rating.notify by ``poll``.
    """

    name = "sms"
    # Seconds of silence after which the bind is checked (enquire_link).
    KEEPALIVE = 20.0

    def __init__(self, host: str, port: int, system_id: str, password: str, *,
                 system_type: str = "", source_addr: str = "abonent", rate: float = 0,
                 submit_timeout: float = 10.0, connect_timeout: float = 5.0):
        self.host, self.port = host, port
        self._system_id, self._password, self._system_type = system_id, password, system_type
        self.source_addr = source_addr
        self.limiter = RateLimiter(rate)
        self.submit_timeout, self.connect_timeout = submit_timeout, connect_timeout
        self.client: smpplib.client.Client | None = None
        self.bind_id = ""
        # sequence -> (tag, part) of submits waiting for their answer.
        self._waiting: dict[int, tuple[int | None, int]] = {}
        self._answers: dict[int, tuple[int, str]] = {}
        self._late: set[int] = set()
        self.events: list[GatewayEvent] = []
        self.submitted = 0
        self.last_activity = time.monotonic()

    def __repr__(self) -> str:  # never the password
        return f"SmppChannel({self.host}:{self.port}, system_id={self._system_id!r})"

    # -- the bind
    def _connect(self) -> None:
        client = smpplib.client.Client(self.host, self.port, timeout=self.connect_timeout,
                                       logger_name="smpp.abonent", allow_unknown_opt_params=True)
        client.set_message_sent_handler(self._on_submit_resp)
        client.set_message_received_handler(self._on_deliver)
        client.set_error_pdu_handler(lambda pdu: None)  # statuses read in _on_submit_resp
        try:
            client.connect()
            # Small PDUs both ways: no Nagle delay waiting on a delayed ACK.
            client._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client.bind_transceiver(system_id=self._system_id, password=self._password,
                                    system_type=self._system_type)
        except (smpplib.exceptions.ConnectionError, smpplib.exceptions.PDUError,
                OSError) as error:
            self._drop(client)
            raise ChannelError(f"SMSC {self.host}:{self.port}: bind failed "
                               f"({type(error).__name__})") from None
        self.client = client
        self.bind_id = uuid.uuid4().hex[:8]
        self._waiting.clear()
        self._late.clear()

    @staticmethod
    def _drop(client) -> None:
        try:
            client.disconnect()
        except Exception:  # noqa: BLE001 - a broken socket is closed either way
            pass

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.unbind()
            except Exception:  # noqa: BLE001
                pass
            self._drop(self.client)
            self.client = None

    # -- what the SMSC says
    def _on_submit_resp(self, pdu, **kwargs) -> None:
        sequence = pdu.sequence
        message_id = pdu.message_id.decode() if isinstance(pdu.message_id, bytes) else \
            (pdu.message_id or "")
        if sequence in self._late:
            self._late.discard(sequence)
            tag, part = self._waiting.pop(sequence, (None, 0))
            if pdu.status == 0 and message_id:
                self.events.append(GatewayEvent("late-answer", message_id, tag=tag, part=part))
            return
        self._answers[sequence] = (pdu.status, message_id)

    def _on_deliver(self, pdu, **kwargs):
        text = pdu.short_message.decode("latin-1") if isinstance(pdu.short_message, bytes) \
            else (pdu.short_message or "")
        if not (pdu.esm_class or 0) & 0x04:
            log.info("notify.sms_mo_ignored")  # a subscriber's reply: not ours to read
            return smpplib.consts.SMPP_ESME_ROK
        message_id = getattr(pdu, "receipted_message_id", None)
        if isinstance(message_id, bytes):
            message_id = message_id.decode()
        if not message_id:
            found = _RECEIPT_ID.search(text)
            message_id = found.group(1) if found else ""
        stat = _RECEIPT_STAT.search(text)
        stat = stat.group(1) if stat else ("DELIVRD" if getattr(pdu, "message_state", 0) == 2
                                           else "UNKNOWN")
        self.events.append(GatewayEvent("receipt", message_id, delivered=stat == "DELIVRD",
                                        detail=text[:300]))
        return smpplib.consts.SMPP_ESME_ROK

    def _read(self, deadline: float) -> bool:
        """Read one PDU before ``deadline``; False when time ran out."""
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        self.client._socket.settimeout(left)
        try:
            self.client.read_once(auto_send_enquire_link=False)
        except socket.timeout:
            return False
        return True

    # -- the channel interface
    def keepalive(self) -> None:
        """An enquire_link when the bind has been quiet for KEEPALIVE
        seconds (SMSCs drop silent binds); a bind that does not answer is
        dropped, and the next send binds again."""
        if self.client is None or time.monotonic() - self.last_activity < self.KEEPALIVE:
            return
        try:
            pdu = smpplib.smpp.make_pdu("enquire_link", client=self.client)
            self.client.send_pdu(pdu)
            self.last_activity = time.monotonic()
        except (smpplib.exceptions.ConnectionError, smpplib.exceptions.PDUError, OSError):
            self._drop(self.client)
            self.client = None

    def send(self, recipient: str, subject: str, body: str, tag: int | None = None
             ) -> SendResult:
        # Whatever is waiting first: receipts, and the SMSC closing a quiet
        # bind, which is better found now than after a submit into it.
        self._pump(0.0)
        if self.client is None:
            self._connect()
        self.last_activity = time.monotonic()
        parts, coding, esm_class = smpplib.gsm.make_parts(body)
        destination = recipient.strip().lstrip("+")
        sequences = []
        try:
            for number, part in enumerate(parts, start=1):
                self.limiter.wait()
                pdu = self.client.send_message(
                    source_addr_ton=smpplib.consts.SMPP_TON_ALNUM
                    if not self.source_addr.isdigit() else smpplib.consts.SMPP_TON_INTL,
                    source_addr_npi=smpplib.consts.SMPP_NPI_UNK
                    if not self.source_addr.isdigit() else smpplib.consts.SMPP_NPI_ISDN,
                    source_addr=self.source_addr,
                    dest_addr_ton=smpplib.consts.SMPP_TON_INTL,
                    dest_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
                    destination_addr=destination, short_message=part,
                    data_coding=coding, esm_class=esm_class, registered_delivery=1)
                sequences.append(pdu.sequence)
                self._waiting[pdu.sequence] = (tag, number)
                self.submitted += 1
            deadline = time.monotonic() + self.submit_timeout
            while any(sequence not in self._answers for sequence in sequences):
                if not self._read(deadline):
                    break
        except (smpplib.exceptions.ConnectionError, smpplib.exceptions.PDUError,
                OSError) as error:
            # The bind is gone: what was sent on it cannot be answered now.
            self._drop(self.client)
            self.client = None
            if sequences:
                raise SubmitTimeout(f"the SMSC connection broke after the submit "
                                    f"({type(error).__name__})",
                                    ref=self._ref(sequences)) from None
            raise ChannelError(f"SMSC connection failed ({type(error).__name__})") from None
        missing = [s for s in sequences if s not in self._answers]
        if missing:
            # The parts may have been taken: wait for a late answer on this
            # bind, never send them again (rating.notify).
            self._late.update(missing)
            for sequence in sequences:
                if sequence in self._answers:
                    status, message_id = self._answers.pop(sequence)
                    part_tag, part = self._waiting.pop(sequence)
                    if status == 0:
                        self.events.append(GatewayEvent("late-answer", message_id,
                                                        tag=part_tag, part=part))
            raise SubmitTimeout(f"no submit_sm_resp in {self.submit_timeout:g} s",
                                ref=self._ref(sequences))
        answers = [self._answers.pop(s) for s in sequences]
        for sequence in sequences:
            self._waiting.pop(sequence, None)
        refused = [status for status, _ in answers if status != 0]
        if refused:
            status = refused[0]
            text = smpplib.consts.DESCRIPTIONS.get(status, "unknown status")
            raise ChannelError(f"SMSC refused the message: 0x{status:08X} {text}",
                               permanent=status not in _TRANSIENT and len(answers) == 1)
        return SendResult([message_id for _, message_id in answers], ref=self._ref(sequences))

    def _ref(self, sequences) -> str:
        return f"{self.bind_id}:" + "+".join(str(s) for s in sequences)

    def _pump(self, wait: float) -> None:
        """Read and handle the PDUs that arrive within ``wait`` seconds (at
        least those already there); a broken bind is dropped."""
        if self.client is None:
            return
        deadline = time.monotonic() + wait
        try:
            while True:
                left = max(0.0, deadline - time.monotonic())
                readable, _, _ = select.select([self.client._socket], [], [], left)
                if not readable:
                    break
                self.client._socket.settimeout(self.connect_timeout)
                self.client.read_once(auto_send_enquire_link=False)
        except (smpplib.exceptions.ConnectionError, smpplib.exceptions.PDUError, OSError,
                socket.timeout):
            self._drop(self.client)
            self.client = None

    def poll(self, wait: float = 0.0) -> list[GatewayEvent]:
        """What the SMSC said since: receipts, late answers (reads for up
        to ``wait`` seconds, at least what is already there)."""
        self._pump(wait)
        self.keepalive()
        events, self.events = self.events, []
        return events


class TelegramChannel:
    """Messages through the Bot API with python-telegram-bot's ``Bot``; its
    ``base_url`` points at Telegram, a local Bot API server, or a test fake.
    PTB is asyncio: the channel keeps one event loop of its own in a thread,
    so synchronous callers (the scheduler, the CLI) can use it."""

    name = "telegram"

    def __init__(self, token: str, base_url: str = "", timeout: float = 10.0):
        from telegram import Bot
        from telegram.request import HTTPXRequest
        self._bot = Bot(token, base_url=base_url or "https://api.telegram.org/bot",
                        request=HTTPXRequest(connect_timeout=timeout, read_timeout=timeout,
                                             write_timeout=timeout))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="telegram-bot")
        self._thread.start()
        self._ready = False

    def __repr__(self) -> str:  # never the token
        return "TelegramChannel()"

    def _run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def _call(self, make):
        from telegram import error

        async def call():
            if not self._ready:
                await self._bot.initialize()
                self._ready = True
            return await make(self._bot)
        try:
            return self._run(call())
        except error.Forbidden as problem:
            raise ChannelError(f"Telegram refused: {problem.message}", permanent=True) from None
        except error.BadRequest as problem:
            raise ChannelError(f"Telegram refused: {problem.message}", permanent=True) from None
        except error.InvalidToken:
            raise ChannelError("Telegram does not know the bot token") from None
        except error.TelegramError as problem:
            raise ChannelError(f"Telegram: {type(problem).__name__}: {problem.message}") \
                from None

    def send(self, recipient: str, subject: str, body: str, tag: int | None = None
             ) -> SendResult:
        message = self._call(lambda bot: bot.send_message(chat_id=int(recipient), text=body))
        return SendResult([str(message.message_id)])

    def updates(self, offset: int, timeout: int = 0) -> list:
        """getUpdates from ``offset``: (update_id, chat_id, text) of messages."""
        got = self._call(lambda bot: bot.get_updates(offset=offset, timeout=timeout,
                                                     allowed_updates=["message"]))
        return [(update.update_id,
                 str(update.message.chat.id) if update.message else None,
                 (update.message.text or "") if update.message else "") for update in got]

    def close(self) -> None:
        async def shut():
            if self._ready:
                await self._bot.shutdown()
        try:
            self._run(shut())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            self._loop.close()


def from_settings(settings, smtp_channel=None) -> dict:
    """The channels the settings turn on (SMS and Telegram only when enabled)."""
    from rating.notify import EmailChannel
    channels = {}
    smtp = settings.section("smtp")
    channels["email"] = smtp_channel or EmailChannel(smtp["host"], smtp["port"], smtp["sender"])
    sms = settings.section("sms")
    if sms["enabled"]:
        channels["sms"] = SmppChannel(sms["host"], sms["port"], sms["system_id"],
                                      sms["password"], system_type=sms["system_type"],
                                      source_addr=sms["source_addr"], rate=sms["rate"],
                                      submit_timeout=sms["submit_timeout"])
    telegram = settings.section("telegram")
    if telegram["enabled"] and telegram["token"]:
        channels["telegram"] = TelegramChannel(telegram["token"], telegram["base_url"])
    return channels
