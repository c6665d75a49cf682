"""One validation layer for every numeric option: ranges declared once, on the config field.

A field declares its allowed range in its type, which tyro ignores and :func:`validate` reads::

    @dataclass(frozen=True)
    class Config:
        learning_rate: Annotated[float, Positive] = 1e-3
        gamma: Annotated[float, Range(0, 1)] = 0.99
        memory_size: Annotated[int, Range(1, 65_536)] = 16

:func:`validate` rejects NaN and ±inf in every float field (declared or not) unless the field's
:class:`Range` says ``nonfinite=True``, and every value outside its range, with one line naming the
flag (``--learning-rate must be > 0, got inf``). :func:`config_from_dict` builds a config from a
loaded JSON dict (a saved ``config.json`` or checkpoint meta) after checking every type and range,
so that nothing is allocated from an absurd saved size.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union

from heed.agents.common.errors import HeedError

T = TypeVar("T")


@dataclass(frozen=True)
class Range:
    """Allowed values of a numeric field: ``lo <= x <= hi`` (``<`` where ``lo_open``/``hi_open``).

    ``None`` bounds are unbounded. NaN and ±inf are refused unless ``nonfinite`` is true.
    """

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    nonfinite: bool = False

    def check(self, value: float) -> bool:
        """Whether ``value`` lies in the range (NaN/inf only where allowed)."""
        if isinstance(value, float) and not math.isfinite(value):
            return self.nonfinite and not math.isnan(value)
        if self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo)):
            return False
        return not (self.hi is not None and (value > self.hi or (self.hi_open and value == self.hi)))

    def describe(self) -> str:
        """``> 0``, ``>= 1``, ``in [0, 1]``, ``in (0, 1]``, ``<= 10``."""
        if self.lo is not None and self.hi is not None:
            return f"in {'(' if self.lo_open else '['}{_num(self.lo)}, {_num(self.hi)}{')' if self.hi_open else ']'}"
        if self.lo is not None:
            return f"{'>' if self.lo_open else '>='} {_num(self.lo)}"
        if self.hi is not None:
            return f"{'<' if self.hi_open else '<='} {_num(self.hi)}"
        return "finite"


def _num(x: float) -> str:
    return f"{int(x):,}".replace(",", "_") if float(x).is_integer() and abs(x) >= 10_000 else f"{x:g}"


#: common ranges
Positive = Range(0, None, lo_open=True)
NonNegative = Range(0)
AtLeastOne = Range(1)
UnitInterval = Range(0, 1)
#: what a seed may be (numpy's SeedSequence and torch.manual_seed both take it)
SeedRange = Range(0, 2**32 - 1)


def flag_name(name: str, prefix: str = "") -> str:
    """The command-line flag of a config field (``learning_rate`` -> ``--learning-rate``)."""
    return "--" + (prefix + name).replace("_", "-")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def _split_annotated(tp: Any) -> tuple[Any, tuple[Any, ...]]:
    if typing.get_origin(tp) is Annotated:
        base, *extras = typing.get_args(tp)
        return base, tuple(extras)
    return tp, ()


def _omits_prefix(extras: tuple[Any, ...]) -> bool:
    """Whether tyro flattens this nested dataclass (``tyro.conf.arg(name="")`` or ``OmitArgPrefixes``)."""
    for extra in extras:
        if getattr(extra, "name", None) == "" or "OmitArgPrefixes" in repr(extra):
            return True
    return False


def _union_args(tp: Any) -> tuple[Any, ...] | None:
    origin = typing.get_origin(tp)
    if origin is Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        return typing.get_args(tp)
    return None


def _nested_prefix(name: str, extras: tuple[Any, ...], prefix: str) -> str:
    return prefix if _omits_prefix(extras) else f"{prefix}{name}."


def validate(cfg: Any, prefix: str = "") -> None:
    """Check every numeric field of the dataclass ``cfg`` (and nested ones) against its declared range.

    Raises one :class:`HeedError` line for the first bad value: NaN/inf in any float field (unless its
    :class:`Range` allows it) or a value outside the declared range.
    """
    hints = _hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        base, extras = _split_annotated(hints.get(f.name, Any))
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            validate(value, _nested_prefix(f.name, extras, prefix))
            continue
        ranges = [e for e in extras if isinstance(e, Range)]
        values = value if isinstance(value, (tuple, list)) else (value,)
        for item in values:
            if isinstance(item, bool) or not isinstance(item, (int, float)):
                continue
            checks = ranges if ranges or isinstance(item, int) else [Range()]  # floats: finite at least
            for rng in checks:
                if not rng.check(item):
                    raise HeedError(f"{flag_name(f.name, prefix)} must be {rng.describe()}, got {item}")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """``value`` as type ``tp`` (JSON shapes: lists for tuples, strings for paths), or HeedError."""
    base, extras = _split_annotated(tp)
    if base is Any:
        return value
    members = _union_args(base)
    if members is not None:
        if value is None and type(None) in members:
            return None
        named = _members_named(members, value)
        members = named or members
        errors = []
        for member in members:
            if member is type(None):
                continue
            try:
                return _coerce(value, member, where)
            except HeedError as exc:
                errors.append(str(exc))
        raise HeedError(errors[0] if len(errors) == 1 else f"{where} has the wrong type ({type(value).__name__})")
    origin = typing.get_origin(base)
    if origin is Literal:
        if value not in typing.get_args(base):
            raise HeedError(f"{where} must be one of {list(typing.get_args(base))}, got {value!r}")
        return value
    if dataclasses.is_dataclass(base):
        if not isinstance(value, dict):
            raise HeedError(f"{where} must be an object, got {type(value).__name__}")
        return config_from_dict(base, value, where)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise HeedError(f"{where} must be a list, got {type(value).__name__}")
        args = typing.get_args(base)
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or base is dict:
        if not isinstance(value, dict):
            raise HeedError(f"{where} must be an object, got {type(value).__name__}")
        return dict(value)
    if base is bool:
        if not isinstance(value, bool):
            raise HeedError(f"{where} must be true or false, got {value!r}")
        return value
    if base is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise HeedError(f"{where} must be an integer, got {value!r}")
        return value
    if base is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise HeedError(f"{where} must be a number, got {value!r}")
        return float(value)
    if base is str:
        if not isinstance(value, str):
            raise HeedError(f"{where} must be a string, got {type(value).__name__}")
        return value
    if base is Path or (isinstance(base, type) and issubclass(base, Path)):
        if not isinstance(value, str):
            raise HeedError(f"{where} must be a path string, got {type(value).__name__}")
        return Path(value)
    if isinstance(base, type) and isinstance(value, base):
        return value
    raise HeedError(f"{where} must be {_type_name(base)}, got {type(value).__name__}")


def _fixed_value(f: dataclasses.Field) -> Any:
    """The value of a non-init field (a part config's ``name``), or MISSING."""
    return f.default if f.default is not dataclasses.MISSING else dataclasses.MISSING


def _members_named(members: tuple[Any, ...], value: Any) -> list[Any]:
    """The dataclass members of a union whose fixed ``name`` field equals ``value["name"]``.

    A table of part configs (``core:ntm``, ``model:transformer``) is a union of dataclasses told apart
    by their non-init ``name``: the stored dict names its member, so its errors are that member's.
    """
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        return []
    out = []
    for member in members:
        base, _ = _split_annotated(member)
        if dataclasses.is_dataclass(base):
            fields = {f.name: f for f in dataclasses.fields(base)}
            if "name" in fields and not fields["name"].init and _fixed_value(fields["name"]) == value["name"]:
                out.append(member)
    return out


def _default_json(f: dataclasses.Field) -> dict[str, Any]:
    """A nested field's default as a JSON-shaped dict (``{}`` when it has none)."""
    value = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    if not dataclasses.is_dataclass(value):
        return {}
    return json.loads(json.dumps(dataclasses.asdict(value), default=str))


def lift_flat_groups(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with the top-level fields of each flat-flag group of ``cls`` gathered under the group.

    A nested dataclass whose flags tyro keeps flat (``tyro.conf.arg(name="")``: a trainer's ``run``
    and ``budget`` options) may have been saved before it was nested, its fields at the top level
    (``{"steps": 3, "seed": 1}``). Those become ``{"budget": {...}, "run": {...}}``; fields the old
    file lacks take the group field's default (the trainer's own). A group already present, or with
    none of its fields at the top level, is left alone.
    """
    hints = _hints(cls)
    fields = dataclasses.fields(cls)
    own = {f.name for f in fields}
    out = data
    for f in fields:
        base, extras = _split_annotated(hints.get(f.name, Any))
        if f.name in data or not dataclasses.is_dataclass(base) or not _omits_prefix(extras):
            continue
        names = {g.name for g in dataclasses.fields(base)} - own
        flat = {k: v for k, v in out.items() if k in names}
        if flat:
            out = {**{k: v for k, v in out.items() if k not in names}, f.name: {**_default_json(f), **flat}}
    return out


def config_from_dict(cls: type[T], data: dict[str, Any], source: str = "config", ignore_unknown: bool = False) -> T:
    """Build the dataclass ``cls`` from a loaded JSON dict, checking types and ranges before anything else.

    Missing fields take their defaults; unknown keys are refused (unless ``ignore_unknown``). An
    older flat layout of a flat-flag group is read too (:func:`lift_flat_groups`). The result passes
    :func:`validate`, so a saved ``{"memory_size": 1e9}`` is refused here, before a model is built from it.
    """
    if not isinstance(data, dict):
        raise HeedError(f"{source} must be a JSON object")
    data = lift_flat_groups(cls, data)
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown and not ignore_unknown:
        raise HeedError(f"{source} has unknown fields {unknown[:3]}")
    values = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        if not f.init:  # fixed by the class (a part's name): must match, is not passed
            if data[f.name] != _fixed_value(f):
                raise HeedError(f"{source}: {f.name} is {data[f.name]!r}, expected {_fixed_value(f)!r}")
            continue
        values[f.name] = _coerce(data[f.name], hints.get(f.name, Any), f"{source}: {f.name}")
    try:
        cfg = cls(**values)
    except (TypeError, ValueError) as exc:
        raise HeedError(f"{source} does not fit {cls.__name__}: {exc}") from None
    try:
        validate(cfg)
    except HeedError as exc:
        raise HeedError(f"{source}: {exc}") from None
    return cfg
