"""Time stamps as the registry writes them, and spans as people read them.

A bottom module (os-free, time only): the hook, list, sync and doctor all format
time the same way.
"""

from __future__ import annotations

import time

STAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def now_iso() -> str:
    """Now as `YYYY-MM-DDTHH:MM:SSZ` (UTC)."""
    return time.strftime(STAMP_FORMAT, time.gmtime())


def iso(seconds: float) -> str:
    """Epoch seconds as `YYYY-MM-DDTHH:MM:SSZ` (UTC)."""
    return time.strftime(STAMP_FORMAT, time.gmtime(seconds))


def parse_stamp(stamp: str) -> float | None:
    """Epoch seconds of a `YYYY-MM-DDTHH:MM:SSZ` stamp (UTC), or None if it is not one.

    A stamp as now_iso writes it is counted out here: strptime's imports (_strptime,
    calendar, locale, datetime: ~3 ms) were a tenth of a status. Anything else is
    left to strptime, which decides as before."""
    if stamp.isascii() and is_stamp(stamp):
        year, month, day = int(stamp[:4]), int(stamp[5:7]), int(stamp[8:10])
        hour, minute, second = int(stamp[11:13]), int(stamp[14:16]), int(stamp[17:19])
        if (year and 1 <= month <= 12 and 1 <= day <= _month_days(year, month) and hour < 24
                and minute < 60 and second < 60):
            return float(_days_since_epoch(year, month, day) * 86400 + hour * 3600
                         + minute * 60 + second)
    import calendar

    try:
        return float(calendar.timegm(time.strptime(stamp, STAMP_FORMAT)))
    except ValueError:
        return None


def _month_days(year: int, month: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _days_since_epoch(year: int, month: int, day: int) -> int:
    """Days from 1970-01-01 to a proleptic Gregorian date (calendar.timegm's count)."""
    year -= month <= 2  # the year counted from March: February's leap day comes last
    era = year // 400
    years = year - era * 400
    days = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    return era * 146097 + years * 365 + years // 4 - years // 100 + days - 719468


def is_stamp(value: str) -> bool:
    """Exactly `YYYY-MM-DDTHH:MM:SSZ`, as now_iso writes it."""
    return len(value) == 20 and all(
        ch == value[i] if i in (4, 7, 10, 13, 16, 19) else value[i].isdigit()
        for i, ch in enumerate("0000-00-00T00:00:00Z")
    )


def age(stamp: str) -> str:
    """How long ago an ISO-8601 UTC stamp was, as clock.duration writes it ('' if unparsable)."""
    then = parse_stamp(stamp)
    return "" if then is None else duration(time.time() - then)


_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def duration(seconds: float) -> str:
    """A span as `42s`, `5m3s`, `1h59m` or `2d3h`: its largest unit and the next one,
    rounded to the nearest of that next one (negative counts as 0). The one way every
    command writes a span: rounded, not cut, so a 2h lease read a few seconds after it
    was taken is `2h` whether `lock` or `locks` prints it."""
    for i in range(len(_UNITS) - 1):
        (unit, size), (sub, sub_size) = _UNITS[i], _UNITS[i + 1]
        count = round(max(0.0, seconds) / sub_size)  # in the smaller unit
        if count * sub_size >= size:
            big, small = divmod(count, size // sub_size)
            return f"{big}{unit}{small}{sub}" if small else f"{big}{unit}"
    return f"{round(max(0.0, seconds))}s"
