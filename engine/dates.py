"""The one parser of dates and times typed by a user: ISO 8601, UTC unless an offset is given.

``12/03/2025`` is 12 March to some readers and 3 December to others, and pandas guesses
silently; a trading window read the wrong way trains or validates on the wrong data. So
every command accepts only ISO 8601 (extended format): ``2025-03-12``,
``2025-03-12T14:00``, ``2025-03-12T14:00:00Z``, ``2025-03-12 14:00:00+02:00``. Anything else
is a one-line error naming the option, and a window whose start is not before its end is
refused the same way.
"""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime

ISO_8601 = re.compile(
    r"^\d{4}-\d{2}-\d{2}"  # date
    r"([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?"  # optional time
    r"(Z|[+-]\d{2}:\d{2})?$"  # optional UTC designator or offset
)
EXAMPLE = "e.g. 2025-03-12 or 2025-03-12T14:00:00Z"


class DateError(ValueError):
    """A date or window given by a user is not ISO 8601, or is empty; the message says which."""


def parse_utc(text: str, *, option: str = "date") -> datetime:
    """``text`` as an aware UTC datetime; DateError unless it is ISO 8601."""
    value = text.strip()
    if not ISO_8601.match(value):
        raise DateError(f"{option} {text!r} is not an ISO 8601 date ({EXAMPLE}).")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise DateError(f"{option} {text!r} is not a valid date: {exc}.") from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def iso_utc_text(text: str, *, option: str = "date") -> str:
    """``text`` checked and written canonically in UTC (``2025-03-12T00:00:00+00:00``)."""
    return parse_utc(text, option=option).isoformat()


def check_window(
    start: str | datetime | None,
    end: str | datetime | None,
    *,
    start_option: str = "--start",
    end_option: str = "--end",
) -> None:
    """DateError if both ends are given and the start is not before the end."""
    if start is None or end is None:
        return
    first = start if isinstance(start, datetime) else parse_utc(start, option=start_option)
    last = end if isinstance(end, datetime) else parse_utc(end, option=end_option)
    if first >= last:
        raise DateError(
            f"{start_option} {first.isoformat()} is not before {end_option} {last.isoformat()}."
        )


def iso_date_argument(text: str) -> str:
    """An argparse ``type=``: ISO 8601 only, returned canonically in UTC; else a usage error."""
    try:
        return iso_utc_text(text)
    except DateError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("date ")) from exc
