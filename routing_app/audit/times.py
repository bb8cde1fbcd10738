"""Times an operator types (``10:02``, ``-15m``, ISO-8601, epoch ms) and times the audit prints. Pure."""

from __future__ import annotations

import re
from datetime import datetime

_RELATIVE = re.compile(r"^-\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)$")
_AGO = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s+ago$")
_TIME_OF_DAY = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?$")
_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
# Epoch milliseconds below this (March 1973) are almost surely epoch seconds typed by mistake.
_MIN_EPOCH_MS = 100_000_000_000

TIME_FORMATS = (
    "ISO-8601 (local time if no zone), HH:MM[:SS] (today), epoch ms, -15m/-2h/-1d (or '15m ago'), now"
)


def parse_time(text: str, now: datetime | None = None) -> int:
    """Epoch milliseconds for ``text``; raises ValueError naming the accepted forms.

    ``now`` (timezone-aware) anchors relative times and "today"; default: the current time.
    """
    now = (now or datetime.now()).astimezone()
    raw = text.strip()
    if not raw:
        raise ValueError(f"empty time; use {TIME_FORMATS}")
    if raw.lower() == "now":
        return _ms(now)
    relative = _RELATIVE.match(raw) or _AGO.match(raw)
    if relative:
        amount, unit = float(relative.group(1)), relative.group(2)
        return _ms(now) - round(amount * _UNITS_MS[unit])
    if raw.isdigit():
        value = int(raw)
        if value < _MIN_EPOCH_MS:
            raise ValueError(f"{raw} is not epoch milliseconds (epoch seconds? multiply by 1000)")
        return value
    of_day = _TIME_OF_DAY.match(raw)
    if of_day:
        hour, minute = int(of_day.group(1)), int(of_day.group(2))
        second = int(of_day.group(3) or 0)
        micro = int((of_day.group(4) or "0").ljust(6, "0"))
        if hour > 23 or minute > 59 or second > 59:
            raise ValueError(f"{raw!r} is not a time of day (HH:MM[:SS], 00:00-23:59)")
        naive = datetime.combine(now.date(), datetime.min.time()).replace(
            hour=hour, minute=minute, second=second, microsecond=micro
        )
        return _ms(naive.astimezone())
    try:
        parsed = datetime.fromisoformat(raw.replace("z", "Z"))
    except ValueError:
        raise ValueError(f"cannot read {raw!r} as a time; use {TIME_FORMATS}") from None
    return _ms(parsed.astimezone())  # naive: the machine's local time


def is_relative(text: str) -> bool:
    """True for "-15m"-style times, which a command line would take for options."""
    return _RELATIVE.match(text.strip()) is not None


def as_ago(text: str) -> str:
    """ "-15m" -> "15m ago": the same time, in a form no option parser mistakes for an option."""
    match = _RELATIVE.match(text.strip())
    return f"{match.group(1)}{match.group(2)} ago" if match else text


def _ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def format_time(ms: int | None) -> str:
    """Local time to the millisecond, for tables."""
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000).astimezone().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def iso_time(ms: int | None) -> str | None:
    """ISO-8601 with the local offset, for JSON and CSV."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000).astimezone().isoformat(timespec="milliseconds")
