"""Every enumeration of the billing domain, in one place."""

ACCOUNT_KINDS = ("person", "company")
ACCOUNT_STATES = ("active", "frozen", "closed", "blocked")
USER_ROLES = ("owner", "accountant", "viewer")
# -- customers with many accounts (issue 21) --
CUSTOMER_KINDS = ("company", "family")
CUSTOMER_DOCUMENTS = ("per_account", "consolidated")
ORG_RIGHTS = ("view", "pay", "service", "users")
FAMILY_INVITATION_STATES = ("pending", "accepted", "declined", "cancelled")
FEE_PERIODS = ("daily", "monthly")
LEDGER_KINDS = ("payment", "fee", "traffic", "option", "promised", "refund", "correction")
# Kinds that add money to an account; the rest take it away.
CREDIT_KINDS = ("payment", "promised", "refund")
PROFILES = ("normal", "turbo", "throttled", "suspended")
# Where a tariff's traffic usage is counted (rating.traffic).
USAGE_SOURCES = ("radius", "netflow")
TRAFFIC_DIRECTIONS = ("in", "out")
OPTION_KINDS = ("turbo", "traffic")

# -- packages (issue 14) --
PACKAGE_TARGETS = ("tariff", "package")
# "discount": a discount on a fee (a credit); "bonus": a promo code's credit
# or bonus points spent on a fee (a credit).
LEDGER_KINDS = LEDGER_KINDS + ("discount", "bonus")

# -- what a ledger entry is for (issue 15) --
# LedgerEntry.memo_code, with its memo_args; the cabinet words each one in
# the reader's language (cabinet.ledger_text). A plain tariff fee has none:
# its key fee:ACCOUNT:PERIOD says it all.
MEMO_CODES = (
    "payment",            # provider, [tail] (a voucher's last characters)
    "freeze_fee",         # (the day from the key)
    "promised",           # due (ISO time, UTC)
    "promised_fee",
    "promised_expired",
    "tariff_difference",  # tariff, starts_on, month
    "package",            # name, period ("2026-12-05" or "2026-12")
    "traffic",            # hour (ISO, UTC), gb, late
    "turbo",              # multiplier, hours
    "option",             # name, hours
    "reversal",           # entry, kind, day, [reason]
    "charge",             # reason (the operator's words)
    "refund",             # reason
    "transfer_out",       # reason
    "transfer_in",        # reason
    "discount",           # percent | amount, period, [package]
    "promo",              # code
    "bonus_spent",        # period, [package]
    "import",             # (an opening balance carried over from the old billing)
)

# -- telephony (issue 17) --
# "call": a day's calls of one account from one import batch, the calls
# listed under it by their ledger_key (rating.telephony).
LEDGER_KINDS = LEDGER_KINDS + ("call",)
MEMO_CODES = MEMO_CODES + (
    "calls",              # day, calls, seconds
)
CALL_SOURCES_FILE = ("asterisk", "freeswitch")
CALL_DISPOSITIONS = ("answered", "no_answer", "busy", "failed")
# out: the A-number is ours; in: only the B-number is ours; onnet: both are
# ours; unknown: neither (stored for the record, charged to nobody).
CALL_DIRECTIONS = ("out", "in", "onnet", "unknown")
# Why a call costs what it costs (rating.telephony.rate_call).
CALL_REASONS = ("rated", "package", "unanswered", "incoming", "onnet", "own", "no_rate",
                "unknown_number", "closed")
VOICE_SERVICE_STATES = ("active", "removed")

# -- spending limits (issue 21, rating.spending) --
SPENDING_METRICS = ("money", "traffic")
SPENDING_ACTIONS = ("notify", "throttle", "block_extras")
# What a charge was for, in spend reports.
SPENDING_SERVICES = ("tariff", "options", "packages", "traffic", "calls", "other")
