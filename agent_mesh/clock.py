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
    """Epoch seconds of a `YYYY-MM-DDTHH:MM:SSZ` stamp (UTC), or None if it is not one."""
    import calendar

    try:
        return float(calendar.timegm(time.strptime(stamp, STAMP_FORMAT)))
    except ValueError:
        return None


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
