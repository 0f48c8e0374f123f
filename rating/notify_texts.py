"""What a notice says, in Russian and English: one template a kind.

A template is a subject (e-mail's; SMS and Telegram send the body alone)
and a body with ``{name}`` fields. Amounts come as Decimal and are written
the way each language writes them (``1 234,50`` in Russian, ``1,234.50`` in
English); no arithmetic happens here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

LANGUAGES = ("ru", "en")

# kind -> language -> (subject, body)
TEMPLATES: dict[str, dict[str, tuple[str, str]]] = {
    "low-balance": {
        "ru": ("Низкий баланс",
               "Лицевой счёт {number}: баланс {balance} ₽, ниже вашего порога {threshold} ₽."),
        "en": ("Low balance",
               "Account {number}: the balance is {balance}, below your threshold of "
               "{threshold}."),
    },
    "runs-out": {
        "ru": ("Скоро закончатся деньги",
               "Лицевой счёт {number}: денег хватит примерно на {days} дн. при плате "
               "{per_day} ₽ в день. Пополните счёт, чтобы остаться на связи."),
        "en": ("Your money runs out soon",
               "Account {number}: the balance lasts about {days} more day(s) at {per_day} "
               "a day. Top up to stay online."),
    },
    "payment": {
        "ru": ("Платёж получен",
               "Лицевой счёт {number}: зачислено {amount} ₽. Баланс {balance} ₽."),
        "en": ("Payment received",
               "Account {number}: {amount} received. The balance is {balance}."),
    },
    "suspended": {
        "ru": ("Доступ приостановлен",
               "Лицевой счёт {number}: доступ в интернет приостановлен, баланс {balance} ₽. "
               "Пополните счёт, и доступ вернётся сам."),
        "en": ("Service suspended",
               "Account {number}: the Internet service is suspended, the balance is "
               "{balance}. Top up and it comes back by itself."),
    },
    "restored": {
        "ru": ("Доступ восстановлен",
               "Лицевой счёт {number}: доступ в интернет восстановлен. Баланс {balance} ₽."),
        "en": ("Service restored",
               "Account {number}: the Internet service is back. The balance is {balance}."),
    },
    "tariff-change": {
        "ru": ("Смена тарифа",
               "Лицевой счёт {number}: с {starts_on} действует тариф «{tariff}»."),
        "en": ("Tariff change",
               "Account {number}: the tariff \"{tariff}\" is in effect from {starts_on}."),
    },
    "request-answered": {
        "ru": ("Ответ на заявку № {request_no}",
               "Лицевой счёт {number}: на вашу заявку № {request_no} ответили: {answer}"),
        "en": ("Request No. {request_no} answered",
               "Account {number}: your request No. {request_no} has an answer: {answer}"),
    },
    "broadcast": {
        "ru": ("Сообщение от оператора", "{text}"),
        "en": ("A message from your provider", "{text}"),
    },
    # Spending limits (issue 21, rating.spending); {month} is "2026-12".
    "spend-warning": {
        "ru": ("Расход приближается к лимиту",
               "Лицевой счёт {number}: за {month} израсходовано {used} из месячного лимита "
               "{limit} ({percent} % и более)."),
        "en": ("Spending is near the limit",
               "Account {number}: {used} of the monthly limit of {limit} is used in {month} "
               "({percent}% or more)."),
    },
    "spend-reached": {
        "ru": ("Месячный лимит исчерпан",
               "Лицевой счёт {number}: за {month} израсходовано {used}, месячный лимит "
               "{limit} исчерпан."),
        "en": ("The monthly limit is reached",
               "Account {number}: {used} is used in {month}; the monthly limit of {limit} "
               "is reached."),
    },
    "spend-throttled": {
        "ru": ("Лимит исчерпан: скорость снижена",
               "Лицевой счёт {number}: за {month} израсходовано {used} при лимите {limit}. "
               "Скорость снижена до начала следующего месяца или до повышения лимита."),
        "en": ("Limit reached: the speed is reduced",
               "Account {number}: {used} is used in {month} against a limit of {limit}. "
               "The speed is reduced until the next month or until the limit is raised."),
    },
    "spend-blocked": {
        "ru": ("Лимит исчерпан: дополнительные услуги недоступны",
               "Лицевой счёт {number}: за {month} израсходовано {used} при лимите {limit}. "
               "Турбо, опции и пакеты недоступны до начала следующего месяца или до "
               "повышения лимита."),
        "en": ("Limit reached: extras are off",
               "Account {number}: {used} is used in {month} against a limit of {limit}. "
               "Turbo, options and packages cannot be bought until the next month or until "
               "the limit is raised."),
    },
    # A company administrator's notice to the company's own users.
    "company-notice": {
        "ru": ("Сообщение от {company}", "{text}"),
        "en": ("A message from {company}", "{text}"),
    },
}

# Broadcast templates an operator picks by name (``abonent notify
# broadcast --template``): ready texts in both languages.
BROADCASTS: dict[str, dict[str, str]] = {
    "outage": {
        "ru": "Ведутся аварийные работы, интернет может быть недоступен. Приносим извинения.",
        "en": "We are fixing a network failure; the Internet may be unavailable. "
              "We apologise.",
    },
    "maintenance": {
        "ru": "Плановые работы на сети: возможны короткие перерывы связи.",
        "en": "Planned maintenance on the network: short interruptions are possible.",
    },
    "restored": {
        "ru": "Работы завершены, связь восстановлена. Спасибо за терпение.",
        "en": "The work is done and the service is back. Thank you for your patience.",
    },
}

KINDS = tuple(TEMPLATES)


@dataclass(frozen=True)
class Quantity:
    """A figure with its unit, written per language: ``rub`` (money) or
    ``gb`` (traffic, gigabytes)."""

    value: Decimal
    unit: str

    def text(self, lang: str) -> str:
        number = _money(self.value, lang)
        if self.unit == "rub":
            return f"{number} ₽" if lang == "ru" else f"{number} RUB"
        return f"{number} ГБ" if lang == "ru" else f"{number} GB"


def language(value: str | None, default: str = "ru") -> str:
    return value if value in LANGUAGES else (default if default in LANGUAGES else "ru")


def _money(value: Decimal, lang: str) -> str:
    text = f"{value:,.2f}"
    if lang == "ru":
        # Russian groups with a (narrow no-break) space and a decimal comma.
        text = text.replace(",", "\u202f").replace(".", ",")
    return text


def _date(value: dt.date, lang: str) -> str:
    return value.strftime("%d.%m.%Y") if lang == "ru" else value.isoformat()


def render(kind: str, lang: str, fields: dict) -> tuple[str, str]:
    """The subject and body of ``kind`` in ``lang`` with ``fields`` filled."""
    lang = language(lang)
    subject, body = TEMPLATES[kind][lang]
    shown = {}
    for name, value in fields.items():
        if isinstance(value, Quantity):
            value = value.text(lang)
        elif isinstance(value, Decimal):
            value = _money(value, lang)
        elif isinstance(value, dt.date):
            value = _date(value, lang)
        shown[name] = value
    return subject.format(**shown), body.format(**shown)
