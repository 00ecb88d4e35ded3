"""Rows into typed records: one mapping for every repository, by column name.

A record is a frozen dataclass whose field names are the query's column names (alias a
column in SQL when they differ: `id AS post_id`, `deleted_at IS NOT NULL AS deleted`).
Fields typed `tuple[...]` or `dict[...]` are converted from the driver's lists and mappings;
a field with a default may be missing from the row. The plan for each record type is built
once, so mapping a row costs about what a hand-written `from_row` did.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

R = TypeVar("R")

_Plan = tuple[tuple[str, Callable[[Any], Any] | None, bool], ...]
_PLANS: dict[type, _Plan] = {}


def from_row(cls: type[R], row: Mapping[str, Any]) -> R:
    """The record of type `cls` that `row` holds."""
    plan = _PLANS.get(cls) or _plan(cls)
    values: dict[str, Any] = {}
    for name, convert, optional in plan:
        try:
            value = row[name]
        except KeyError:
            if optional:
                continue
            raise KeyError(f"{cls.__name__}.{name}: no such column in the row") from None
        values[name] = convert(value) if convert is not None and value is not None else value
    return cls(**values)


def from_rows(cls: type[R], rows: Iterable[Mapping[str, Any]]) -> list[R]:
    return [from_row(cls, row) for row in rows]


def columns(cls: type, table: str = "") -> str:
    """`cls`'s fields as a select list (`"t.a, t.b"` with `table="t"`), for records whose
    fields are all plain columns of one table."""
    prefix = f"{table}." if table else ""
    return ", ".join(prefix + field.name for field in dataclasses.fields(cls))


def _plan(cls: type) -> _Plan:
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__name__} is not a dataclass")
    hints = typing.get_type_hints(cls)
    plan = tuple(
        (field.name, _converter(hints[field.name]), _has_default(field))
        for field in dataclasses.fields(cls)
        if field.init
    )
    _PLANS[cls] = plan
    return plan


def _converter(hint: Any) -> Callable[[Any], Any] | None:
    if isinstance(hint, types.UnionType):  # `X | None`: convert the X
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    origin = typing.get_origin(hint)
    if origin is tuple:
        return tuple
    if origin is dict:
        return dict
    return None


def _has_default(field: dataclasses.Field[Any]) -> bool:
    return (
        field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING
    )
