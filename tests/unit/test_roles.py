"""rating.roles: the one table of who may change what (issue 15)."""

from __future__ import annotations

import pytest

from rating import roles
from rating.choices import USER_ROLES


def test_an_owner_may_everything_an_accountant_money_and_contacts_a_viewer_nothing():
    assert all(roles.may("owner", change) for change in roles.CHANGES)
    assert [c for c in roles.CHANGES if roles.may("accountant", c)] == ["money", "contacts"]
    assert not any(roles.may("viewer", change) for change in roles.CHANGES)
    assert roles.roles_that_may("service") == ("owner",)
    assert roles.roles_that_may("money") == ("owner", "accountant")


@pytest.mark.parametrize("role", [None, "", "admin", "OWNER"])
def test_an_unknown_role_may_nothing(role):
    assert not any(roles.may(role, change) for change in roles.CHANGES)


def test_an_unknown_change_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown change group"):
        roles.may("owner", "tariff")


def test_every_role_has_a_row():
    assert set(roles.ALLOWED) == set(USER_ROLES)
