"""Lossless JSON for the scalar values dupewatch records about rows (primary keys, foreign-key values).

Archived rows themselves live in typed archive tables (see `archive.py`); this codec only carries the
small identities the repoint log needs to point references back on undo.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any


def encode(value: Any) -> Any:
    """A JSON-able form of `value` that `decode` turns back into an equal value of the same type."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return {"$float": repr(value)}
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, date):
        return {"$date": value.isoformat()}
    if isinstance(value, time):
        return {"$time": value.isoformat()}
    if isinstance(value, timedelta):
        return {"$timedelta": [value.days, value.seconds, value.microseconds]}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, uuid.UUID):
        return {"$uuid": str(value)}
    raise TypeError(f"cannot record a value of type {type(value).__name__}")


_DECODERS: dict[str, Any] = {
    "$float": float,
    "$decimal": Decimal,
    "$datetime": datetime.fromisoformat,
    "$date": date.fromisoformat,
    "$time": time.fromisoformat,
    "$timedelta": lambda v: timedelta(days=v[0], seconds=v[1], microseconds=v[2]),
    "$bytes": base64.b64decode,
    "$uuid": uuid.UUID,
}


def decode(value: Any) -> Any:
    if isinstance(value, dict) and len(value) == 1:
        (tag, raw), = value.items()
        return _DECODERS[tag](raw)
    return value


def dumps(values: list[Any] | tuple[Any, ...]) -> str:
    return json.dumps([encode(v) for v in values], separators=(",", ":"))


def loads(text: str) -> list[Any]:
    return [decode(v) for v in json.loads(text)]


def display(value: Any) -> Any:
    """A value for JSON output meant for people (dates as ISO text, bytes as hex)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, list | tuple):  # an array, a jsonb array: its elements as JSON, not Python's repr
        return [display(v) for v in value]
    if isinstance(value, dict):  # a jsonb object: `{"a": null}`, not Python's `{'a': None}`
        return {str(k): display(v) for k, v in value.items()}
    return str(value)
