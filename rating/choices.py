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

# -- packages (issue 14) --
PACKAGE_TARGETS = ("tariff", "package")
# "discount": a discount on a fee (a credit); "bonus": a promo code's credit
# or bonus points spent on a fee (a credit).
LEDGER_KINDS = LEDGER_KINDS + ("discount", "bonus")
