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


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if attrs.has(type(value)):
        return {f.name: _plain(getattr(value, f.name)) for f in attrs.fields(type(value))}
    return value


@cache
def _field_types(cls: Any) -> dict[str, Any]:
    kinds = {}
    for name, kind in typing.get_type_hints(cls).items():
        if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
        kinds[name] = kind
    return kinds


def _build(cls: Any, data: Any) -> Any:
    """
    Rebuild an attrs instance from L{_plain} output: enums, tuples and nested
    records come back as their declared types.
    """
    kinds = _field_types(cls)
    kwargs = {}
    for field in attrs.fields(cls):
        if field.name not in data:
            continue
        value = data[field.name]
        kind = kinds.get(field.name)
        if isinstance(kind, type) and attrs.has(kind) and value is not None:
            value = _build(kind, value)
        elif isinstance(kind, type) and issubclass(kind, Enum):
            value = kind(value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[field.name] = value
    return cls(**kwargs)


def dump_record(record: Any) -> bytes:
    """
    Serialise an attrs record to JSON bytes.
    """
    return json.dumps(_plain(record), sort_keys=True, separators=(",", ":")).encode()


def load_record(cls: type[R], data: bytes) -> R:
    """
    Deserialise JSON bytes written by L{dump_record}.
    """
    try:
        return _build(cls, json.loads(data))  # type: ignore[no-any-return]
    except (ValueError, TypeError, KeyError) as e:
        raise StorageError(f"corrupt {cls.__name__} record: {e}") from e


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
