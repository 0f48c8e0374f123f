"""Which speed a profile gives: one pure rule for RADIUS replies, CoA and
the cabinet's "speed now", so the three cannot disagree."""

from __future__ import annotations

# A turbo bought without a stated multiplier doubles the speed.
DEFAULT_TURBO_MULTIPLIER = 2


def profile_speed(profile: str, rate_down_kbps: int, rate_up_kbps: int,
                  negative_rate_kbps: int,
                  turbo_multiplier: int = DEFAULT_TURBO_MULTIPLIER) -> tuple[int, int] | None:
    """(down, up) in kbit/s, or None when the profile gives no access:
    suspended, or throttled on a tariff whose negative-balance speed is 0."""
    if profile == "normal":
        return rate_down_kbps, rate_up_kbps
    if profile == "turbo":
        factor = max(1, turbo_multiplier)
        return rate_down_kbps * factor, rate_up_kbps * factor
    if profile == "throttled" and negative_rate_kbps > 0:
        return negative_rate_kbps, negative_rate_kbps
    return None
