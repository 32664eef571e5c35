"""Key, identity and watermark values as the state store keeps them: type-tagged JSON that decodes to the same
Python value, so that it binds as that type again (a jsonb document as a dict, an array as a list)."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from datetime import time as dt_time
from decimal import Decimal
from typing import Any

from monitor.dialects.server_value import ServerValue


def encode_value(value: Any) -> Any:
    """A JSON-able, type-tagged form of a value that `decode_value` turns back into the same Python value."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return {"f": repr(value)}
    if isinstance(value, Decimal):
        return {"d": str(value)}
    if isinstance(value, datetime):
        return {"dt": value.isoformat()}
    if isinstance(value, date):
        return {"da": value.isoformat()}
    if isinstance(value, dt_time):
        return {"t": value.isoformat()}
    if isinstance(value, timedelta):
        return {"td": value.total_seconds()}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"b": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, uuid.UUID):
        return {"u": str(value)}
    if isinstance(value, list | tuple):  # an array column's value
        return {"l": [encode_value(v) for v in value]}
    if isinstance(value, ServerValue):  # PostgreSQL's `infinity`, a year BC: the server's text and its type
        return {"sv": [value.text, value.type_name]}
    if isinstance(value, dict):  # a JSON document (jsonb): its canonical text, keys sorted as jsonb keeps them
        return {"j": json.dumps(value, sort_keys=True, separators=(",", ":"))}
    return {"s": str(value)}


_DECODERS: dict[str, Callable[[Any], Any]] = {
    "f": float, "d": Decimal, "dt": datetime.fromisoformat, "da": date.fromisoformat,
    "t": dt_time.fromisoformat, "td": lambda s: timedelta(seconds=s),
    "b": base64.b64decode, "u": uuid.UUID, "s": str, "j": json.loads, "sv": lambda v: ServerValue(*v),
}


def decode_value(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    (tag, text), = value.items()
    if tag == "l":
        return [decode_value(v) for v in text]
    return _DECODERS[tag](text)


_PLAIN = (int, str, type(None))


def encode_key(values: Sequence[Any]) -> str:
    """The canonical text of a key tuple (or of a row identity): JSON, compact. Two keys are equal exactly when
    their texts are."""
    if all(type(v) is int for v in values):  # the commonest keys and identities, without json's overhead
        return "[" + ",".join(map(str, values)) + "]"
    if all(type(v) in _PLAIN for v in values):  # no tagging needed
        return json.dumps(list(values), separators=(",", ":"))
    return json.dumps([encode_value(v) for v in values], separators=(",", ":"))


def decode_key(text: str) -> tuple[Any, ...]:
    return tuple(decode_value(v) for v in json.loads(text))


def encoded(value: Any) -> str | None:
    """A watermark as the state stores it (None: nothing read yet)."""
    return None if value is None else json.dumps(encode_value(value))


def decoded(text: str | None) -> Any:
    return None if text is None else decode_value(json.loads(text))


def lower_watermark(a: str | None, b: str | None) -> str | None:
    """The lower of two encoded watermarks (None, meaning "nothing read yet", is lowest)."""
    if a is None or b is None:
        return None
    try:
        return a if decoded(a) <= decoded(b) else b
    except TypeError:  # naive against aware datetimes: keep the first (a full pass will come)
        return a
