"""Reading request parameters: one rule for times, ids and numbers, one error type.

Every reader raises BadParameter naming the parameter at fault. The API answers it
with a 400 `{field: [message]}` (api/errors.py); the pages with a 400 that shows the
message. Nothing here touches the database: bounds are checked before a value can
reach a query (SQLite refuses integers beyond 64 bits; date arithmetic past year
9999 overflows).
"""

import re
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

MAX_ID = 2**63 - 1  # a signed 64-bit column
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
# A year short of datetime's end, so ranges and buckets computed from a time still fit.
LATEST = datetime(9999, 1, 1, tzinfo=UTC)
MS_FROM = 10**11  # a number this large is epoch milliseconds: as seconds it is year 5138
MAX_OFFSET = 24 * 60  # minutes

NUMBER = re.compile(r"[+-]?[0-9]+(\.[0-9]*)?")
WHOLE = re.compile(r"[+-]?[0-9]+")


class BadParameter(ValueError):
    """A request parameter that cannot be used; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def text(value: str, field: str) -> str:
    # PostgreSQL refuses NUL in any string, and no name or pattern needs one.
    if "\x00" in value:
        raise BadParameter(field, f"{field} must not contain NUL characters")
    return value


def single(params, field: str) -> str:
    """A query parameter that may be given once: its value, "" when absent."""
    values = params.getlist(field)
    if len(values) > 1:
        raise BadParameter(field, f"give {field} once, not {len(values)} times")
    return text(values[0], field) if values else ""


def whole_number(value: str, field: str, low: int = 0, high: int = MAX_ID) -> int:
    """An integer in ASCII digits within [low, high]."""
    if not WHOLE.fullmatch(value):
        raise BadParameter(field, f"{field} must be a whole number, got {value[:40]!r}")
    # Length first: int() of thousands of digits is slow, then refused.
    if len(value) > 20 or not low <= int(value) <= high:
        raise BadParameter(field, f"{field} must be from {low} to {high}")
    return int(value)


def parse_id(value: str, field: str) -> int:
    """A database id: it must fit a signed 64-bit column."""
    return whole_number(value, field, 1, MAX_ID)


def parse_offset(value: str | None) -> timedelta:
    """The browser's `tz`: minutes to add to its local time to get UTC, as
    JavaScript's getTimezoneOffset gives it (UTC+10 is -600)."""
    if not value:
        return timedelta(0)
    return timedelta(minutes=whole_number(value, "tz", -MAX_OFFSET, MAX_OFFSET))


def parse_time(value: str, field: str, offset: timedelta = timedelta(0)) -> datetime:
    """An aware UTC time from ISO 8601 or an epoch number.

    Numbers are epoch seconds (fractions allowed); from 10^11 up they are epoch
    milliseconds, which is what the pages' charts send. An ISO time without a zone
    is UTC, or local time `offset` behind UTC when a page sent its `tz`."""
    if NUMBER.fullmatch(value):
        number = Decimal(value) / (1000 if abs(Decimal(value)) >= MS_FROM else 1)
        return _within(_from_epoch(number, field), value, field)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadParameter(
            field, f"{field}: not a time: {value[:40]!r}; use ISO 8601 or epoch seconds"
        ) from None
    try:
        utc = parsed.astimezone(UTC) if parsed.tzinfo else (parsed + offset).replace(tzinfo=UTC)
    except OverflowError:
        utc = None
    return _within(utc, value, field)


def _from_epoch(seconds: Decimal, field: str) -> datetime | None:
    micro = int((seconds * 10**6).to_integral_value(ROUND_HALF_EVEN))
    limit = int((LATEST - EARLIEST) / timedelta(microseconds=1))
    if not 0 <= micro <= limit:
        return None  # before timedelta can overflow on a huge number
    return EARLIEST + timedelta(microseconds=micro)


def _within(utc: datetime | None, value: str, field: str) -> datetime:
    if utc is None or not EARLIEST <= utc <= LATEST:
        raise BadParameter(
            field,
            f"{field}: {value[:40]!r} is outside the times this server handles "
            f"({EARLIEST:%Y-%m-%d} to {LATEST:%Y-%m-%d} UTC)",
        )
    return utc


def time_range(
    params, default: timedelta, now: datetime, offset: timedelta = timedelta(0)
) -> tuple[datetime, datetime]:
    """`from` and `to` of a query; `to` defaults to now and `from` to `default` before."""
    end = parse_time(params["to"], "to", offset) if params.get("to") else now
    start = parse_time(params["from"], "from", offset) if params.get("from") else end - default
    if end <= start:
        raise BadParameter("to", "the range is empty or inverted: `to` must be after `from`")
    return start, end


class IdConverter:
    """`<id:…>` in a URL: an id that fits a 64-bit column. Larger numbers match no URL
    (404) instead of reaching the database, which SQLite answers with an error."""

    regex = "[0-9]{1,19}"

    def to_python(self, value: str) -> int:
        number = int(value)
        if not 1 <= number <= MAX_ID:
            raise ValueError(f"not an id: {value}")
        return number

    def to_url(self, value: int) -> str:
        return str(value)
