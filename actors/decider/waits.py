"""WAIT task times: Conductor's ``duration`` and ``until`` formats (DateTimeUtils), parsed without a clock."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo

_UNITS = {
    "d": 86400, "day": 86400, "days": 86400,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
}  # fmt: skip
_PART = re.compile(r"\s*(\d+)\s*([a-zA-Z]+)\s*")
_OFFSET = re.compile(r"^[+-]\d{2}:?\d{2}$")


def parse_duration(text: str) -> int:
    """Seconds in ``"1d 2h 3m 4s"``, ``"30 seconds"``, ``"2 hours"``; raises ValueError otherwise."""
    position, total, found = 0, 0, False
    text = text.strip()
    while position < len(text):
        match = _PART.match(text, position)
        if match is None or match.group(2).lower() not in _UNITS:
            raise ValueError(f"cannot parse duration {text!r} (use e.g. '1d 2h 3m 4s' or '30 seconds')")
        total += int(match.group(1)) * _UNITS[match.group(2).lower()]
        position, found = match.end(), True
    if not found:
        raise ValueError(f"cannot parse duration {text!r}")
    return total


def wait_deadline(input_data: dict[str, object], started_at: int) -> int | None:
    """When a WAIT task that started at ``started_at`` (epoch ms) with ``input_data`` is due, in epoch ms, or
    None when it has neither ``duration`` nor ``until`` (it waits to be completed from outside); raises
    ValueError for a time that does not parse."""
    duration, until = input_data.get("duration"), input_data.get("until")
    if duration is not None:
        return started_at + parse_duration(str(duration)) * 1000
    if until is not None:
        return parse_until(str(until))
    return None


def parse_until(text: str) -> int:
    """Epoch ms of ``yyyy-MM-dd HH:mm``, ``yyyy-MM-dd HH:mm <zone>`` or ``yyyy-MM-dd`` (UTC unless a zone
    is given: an IANA name such as ``Europe/Paris``, ``UTC``/``GMT``/``Z``, or an offset ``+05:30``)."""
    parts = text.strip().split()
    zone: dt.tzinfo = dt.UTC
    if len(parts) == 3:
        zone = _zone(parts.pop())
    try:
        if len(parts) == 2:
            moment = dt.datetime.strptime(" ".join(parts), "%Y-%m-%d %H:%M")
        elif len(parts) == 1:
            moment = dt.datetime.strptime(parts[0], "%Y-%m-%d")
        else:
            raise ValueError
    except ValueError:
        raise ValueError(
            f"cannot parse until {text!r} (use 'yyyy-MM-dd HH:mm', 'yyyy-MM-dd HH:mm zone' or 'yyyy-MM-dd')"
        ) from None
    return int(moment.replace(tzinfo=zone).timestamp() * 1000)


def _zone(name: str) -> dt.tzinfo:
    if name.upper() in ("UTC", "GMT", "Z"):
        return dt.UTC
    if _OFFSET.match(name):
        sign = -1 if name[0] == "-" else 1
        digits = name[1:].replace(":", "")
        return dt.timezone(sign * dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None
