"""Inputs the fuzz targets (tests/fuzz/, bench/fuzz.py) found breaking a
contract, kept as plain tests: each one must now get the documented answer.
Their raw inputs are also in tests/fuzz/corpus/, replayed by
tests/integration/test_fuzz_corpus.py."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import func, select

from rating.models import Account, LedgerEntry, OperationLog, PromisedPayment
from tests.integration.cabinet_helpers import (  # noqa: F401 (fixtures)
    app, cabinet_ctx, client, log_in, post_form, seed_subscriber,
)


def _state(ctx, account_id):
    with ctx.Session() as session:
        return (session.get(Account, account_id).balance,
                session.scalar(select(func.count()).select_from(LedgerEntry)),
                session.scalar(select(func.count()).select_from(OperationLog)),
                session.scalar(select(func.count()).select_from(PromisedPayment)))


# Found by the cabinet_forms target: DecimalField accepts these, rating's
# money() refuses them with ValueError / InvalidOperation (not a DomainError),
# and POST /promised answered 500.
@pytest.mark.parametrize("amount", ["0.001", "NaN", "sNaN", "Infinity", "-Infinity",
                                    "1e999999", "100.005"])
def test_promised_payment_form_refuses_amounts_the_ledger_cannot_hold(client, cabinet_ctx,
                                                                      amount):
    broke = seed_subscriber(cabinet_ctx, balance=None)
    log_in(client, broke.login, broke.password, lang="en")
    before = _state(cabinet_ctx, broke.account_id)
    response = post_form(client, "/promised", {"amount": amount})
    assert response.status_code == 400
    assert "Not a valid decimal value" in response.text
    assert _state(cabinet_ctx, broke.account_id) == before
    # A good amount is still taken afterwards.
    assert post_form(client, "/promised", {"amount": "300.00"}).status_code == 302
    assert _state(cabinet_ctx, broke.account_id)[0] == Decimal("300.00")
