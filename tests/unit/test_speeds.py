import pytest

from rating.speeds import profile_speed


@pytest.mark.parametrize("profile, negative, multiplier, expected", [
    ("normal", 1000, 2, (100_000, 50_000)),
    ("turbo", 1000, 2, (200_000, 100_000)),
    ("turbo", 1000, 3, (300_000, 150_000)),
    ("throttled", 1000, 2, (1000, 1000)),
    ("throttled", 0, 2, None),   # no negative-balance speed: no access
    ("suspended", 1000, 2, None),
])
def test_profile_speed(profile, negative, multiplier, expected):
    assert profile_speed(profile, 100_000, 50_000, negative, multiplier) == expected
