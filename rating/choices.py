"""Every enumeration of the billing domain, in one place."""

ACCOUNT_KINDS = ("person", "company")
ACCOUNT_STATES = ("active", "frozen", "closed", "blocked")
USER_ROLES = ("owner", "accountant", "viewer")
FEE_PERIODS = ("daily", "monthly")
LEDGER_KINDS = ("payment", "fee", "traffic", "option", "promised", "refund", "correction")
# Kinds that add money to an account; the rest take it away.
CREDIT_KINDS = ("payment", "promised", "refund")
PROFILES = ("normal", "turbo", "throttled", "suspended")
# Where a tariff's traffic usage is counted (rating.traffic).
USAGE_SOURCES = ("radius", "netflow")
TRAFFIC_DIRECTIONS = ("in", "out")
OPTION_KINDS = ("turbo", "traffic")
