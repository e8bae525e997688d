"""Parsing of the human units the API accepts: durations ("800ms", "5m", "1h30m") and percents ("1%");
and the RFC 3339 times that status and the API server write."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Final

DURATION_PATTERN: Final = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
PERCENT_PATTERN: Final = r"^[0-9]+(\.[0-9]+)?%$"


def percent_range_pattern(max_percent: int) -> str:
    """A percent pattern that admits 0% to `max_percent` % inclusive (a power of ten): a range the API
    server enforces as a plain schema pattern, so every server refuses "150%" at admission, CEL or not."""
    digits = len(str(max_percent)) - 1
    if max_percent != 10**digits or digits < 1:
        raise ValueError(f"max_percent must be a power of ten >= 10, not {max_percent}")
    return rf"^({max_percent}(\.0+)?|[0-9]{{1,{digits}}}(\.[0-9]+)?)%$"


# The ranges the API's percentages are held to, by pattern: `nlpctl validate` turns a mismatch into
# "must be a percentage from 0% to 100%" rather than quoting the regular expression.
SHARE_PERCENT_PATTERN: Final = percent_range_pattern(100)
REGRESSION_PERCENT_PATTERN: Final = percent_range_pattern(1000)
PERCENT_RANGES: Final = {SHARE_PERCENT_PATTERN: (0, 100), REGRESSION_PERCENT_PATTERN: (0, 1000)}

_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration string; raises ValueError on anything else."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"invalid duration {text!r}: use e.g. 800ms, 60s, 5m, 1h30m")
    return sum(float(num) * _UNIT_SECONDS[unit] for num, unit in _DURATION_PART.findall(text))


def parse_percent(text: str) -> float:
    """Fraction in a percent string ("1%" -> 0.01); raises ValueError on anything else."""
    if not re.fullmatch(PERCENT_PATTERN, text):
        raise ValueError(f"invalid percentage {text!r}: use e.g. 1% or 0.5%")
    return float(text[:-1]) / 100.0


def format_duration(seconds: float) -> str:
    """Short human form of a duration, the inverse of parse_duration for round values."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs}s" if secs else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes}m" if minutes else f"{hours}h"


def parse_time(text: object) -> datetime | None:
    """An RFC 3339 time as status and the API server write it ("2026-11-26T10:00:00Z"); None when it is
    absent or unreadable (a stored value nobody can parse must not stop a reconcile). Naive is UTC."""
    if not isinstance(text, str) or not text:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def format_time(moment: datetime) -> str:
    """The RFC 3339 form status stores: whole seconds, UTC, "Z"."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
