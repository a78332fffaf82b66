"""
JSON (de)serialisation of attrs records kept in a L{Store}.
"""

from __future__ import annotations

import json
import types
import typing
from enum import Enum
from functools import cache
from typing import Any, TypeVar

import attrs

from ._interface import StorageError, Store

R = TypeVar("R")


# Values L{_plain} passes through as they are (exact types: an enum member
# whose value is an int or a str is not one of them).
_SCALARS = frozenset({str, int, float, bool, type(None)})


@cache
def _field_names(cls: Any) -> tuple[str, ...] | None:
    """The field names of attrs class C{cls}, or C{None} for another type."""
    return tuple(f.name for f in attrs.fields(cls)) if attrs.has(cls) else None


def _plain(value: Any) -> Any:
    kind: Any = type(value)
    if kind in _SCALARS:
        return value
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    names = _field_names(kind)
    if names is not None:
        return {name: _plain(getattr(value, name)) for name in names}
    return value


@cache
def _field_types(cls: Any) -> dict[str, Any]:
    kinds = {}
    for name, kind in typing.get_type_hints(cls).items():
        if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
        kinds[name] = kind
    return kinds


@cache
def _decoding(cls: Any) -> tuple[tuple[str, Any, Any], ...]:
    """
    For each field of attrs class C{cls}: its name, its record type (when
    it holds a nested record) and its enum type (when it holds an enum).
    """
    kinds = _field_types(cls)
    plan = []
    for field in attrs.fields(cls):
        kind = kinds.get(field.name)
        record = kind if isinstance(kind, type) and attrs.has(kind) else None
        enum = kind if record is None and isinstance(kind, type) and issubclass(kind, Enum) else None
        plan.append((field.name, record, enum))
    return tuple(plan)


def _build(cls: Any, data: Any) -> Any:
    """
    Rebuild an attrs instance from L{_plain} output: enums, tuples and nested
    records come back as their declared types.
    """
    kwargs = {}
    for name, record, enum in _decoding(cls):
        if name not in data:
            continue
        value = data[name]
        if record is not None:
            if value is not None:
                value = _build(record, value)
        elif enum is not None:
            value = enum(value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


# Made once: C{json.dumps} with options builds an encoder at every call.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"))

#: How many records L{record_bytes} remembers the stored bytes of.
LOADED_KEPT = 128

# The bytes each recently loaded record was read from, by the record's
# identity (the record is kept with them, so that its id is not reused).
_loaded: dict[int, tuple[Any, bytes]] = {}


def dump_record(record: Any) -> bytes:
    """
    Serialise an attrs record to JSON bytes.
    """
    return _ENCODER.encode(_plain(record)).encode()


#: How many decoded records L{load_record} keeps, by their bytes.
DECODED_KEPT = 512

# Records are frozen: the same bytes (a token or an account read on every
# request) give the same record, decoded once.
_decoded: dict[tuple[type, bytes], Any] = {}


def load_record(cls: type[R], data: bytes) -> R:
    """
    Deserialise JSON bytes written by L{dump_record}.
    """
    data = bytes(data)
    record = _decoded.get((cls, data))
    if record is None:
        try:
            record = _build(cls, json.loads(data))
        except (ValueError, TypeError, KeyError) as e:
            raise StorageError(f"corrupt {cls.__name__} record: {e}") from e
        _keep(_decoded, DECODED_KEPT, (cls, data), record)
    _keep(_loaded, LOADED_KEPT, id(record), (record, data))
    return record  # type: ignore[no-any-return]


def _keep(kept: dict[Any, Any], most: int, key: Any, value: Any) -> None:
    """Add C{key} to C{kept}, first forgetting the oldest key if full."""
    if len(kept) >= most and key not in kept:
        try:
            del kept[next(iter(kept))]
        except (KeyError, RuntimeError, StopIteration):  # pragma: no cover - another thread trimmed it
            pass
    kept[key] = value


def record_bytes(record: Any) -> bytes:
    """
    The bytes C{record} is stored as: those it was loaded from when it is
    one of the last L{LOADED_KEPT} records L{load_record} made (no second
    serialisation, and what a compare-and-set of it must expect), else
    L{dump_record}'s.
    """
    found = _loaded.get(id(record))
    if found is not None and found[0] is record:
        return found[1]
    return dump_record(record)


async def get_record(store: Store, cls: type[R], key: str) -> R | None:
    """
    Load the record at ``key`` or return ``None``.
    """
    data = await store.get(key)
    return None if data is None else load_record(cls, data)


async def put_record(store: Store, key: str, record: Any, *, ttl: float | None = None) -> None:
    """
    Store ``record`` at ``key``.
    """
    await store.set(key, dump_record(record), ttl=ttl)
