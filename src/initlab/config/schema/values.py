"""Value types: each refuses a value with the phrase of what it expects; ``show`` spells a
value as the user wrote it, passwords masked."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any

from pydantic import PlainValidator
from pydantic_core import PydanticCustomError

from initlab.tracking.secrets import mask


def show(value: Any) -> str:
    """A value as the user wrote it (Hydra's spelling): ``nan``, ``null``, ``true``, ``'abc'``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return repr(mask(value))
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {show(v)}" for k, v in value.items()) + "}"
    if isinstance(value, Sequence):
        return "[" + ", ".join(show(v) for v in value) + "]"
    return repr(value)




# ---- value types: each refuses with the phrase of what it expects ----------------------------
def _refuse(expected: str) -> PydanticCustomError:
    return PydanticCustomError("initlab", "{expected}", {"expected": expected})


def _checked(expected: str, ok: Callable[[Any], bool], nullable: bool, note: str = "") -> Any:
    phrase = (f"{expected} or null" if nullable else expected) + note

    def check(value: Any) -> Any:
        if value is None and nullable:
            return None
        if not ok(value):
            raise _refuse(phrase)
        return value

    return Annotated[Any, PlainValidator(check)]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _range_text(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    fmt = lambda v: f"{v:g}" if isinstance(v, float) else str(v)  # noqa: E731
    if lo is not None and hi is not None:
        return f" in {'(' if lo_open else '['}{fmt(lo)}, {fmt(hi)}{')' if hi_open else ']'}"
    if lo is not None:
        return f" {'>' if lo_open else '>='} {fmt(lo)}"
    if hi is not None:
        return f" {'<' if hi_open else '<='} {fmt(hi)}"
    return ""


def _in_range(v: float, lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> bool:
    if lo is not None and (v <= lo if lo_open else v < lo):
        return False
    return not (hi is not None and (v >= hi if hi_open else v > hi))


def number(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
           hi_open: bool = False, nullable: bool = False) -> Any:
    """A finite int or float (not a bool, not a string) within the bounds."""
    text = "a finite number" + _range_text(lo, hi, lo_open, hi_open)
    return _checked(text, lambda v: _is_number(v) and math.isfinite(v)
                    and _in_range(v, lo, hi, lo_open, hi_open), nullable)


def positive(nullable: bool = False) -> Any:
    return number(0, lo_open=True, nullable=nullable)


def non_negative(nullable: bool = False) -> Any:
    return number(0, nullable=nullable)


def integer(lo: int | None = None, hi: int | None = None, *, nullable: bool = False,
            note: str = "") -> Any:
    """An int (not a bool, not 2.5, not '3') within the bounds."""
    text = "an integer" + _range_text(lo, hi, False, False)
    return _checked(text, lambda v: isinstance(v, int) and not isinstance(v, bool)
                    and _in_range(v, lo, hi, False, False), nullable, note)


def boolean(nullable: bool = False) -> Any:
    return _checked("true or false", lambda v: isinstance(v, bool), nullable)


def one_of(*choices: Any, nullable: bool = False) -> Any:
    text = "one of " + ", ".join(show(c) for c in choices)
    return _checked(text, lambda v: not isinstance(v, bool) and v in choices
                    and type(v) in {type(c) for c in choices if c == v}, nullable)


def text(nullable: bool = False) -> Any:
    return _checked("a non-empty string", lambda v: isinstance(v, str) and v.strip() != "",
                    nullable)


def int_list(lo: int = 1, *, length: int | None = None, nullable: bool = False) -> Any:
    what = f"a list of {length} integers" if length else "a list of integers"
    return _checked(f"{what} >= {lo}",
                    lambda v: isinstance(v, (list, tuple))
                    and (length is None or len(v) == length)
                    and all(isinstance(x, int) and not isinstance(x, bool) and x >= lo for x in v),
                    nullable)


def number_list(lo: float, hi: float, *, length: int, hi_open: bool = False) -> Any:
    return _checked(f"a list of {length} finite numbers{_range_text(lo, hi, False, hi_open)}",
                    lambda v: isinstance(v, (list, tuple)) and len(v) == length
                    and all(_is_number(x) and math.isfinite(x)
                            and _in_range(x, lo, hi, False, hi_open) for x in v), False)


def mapping(nullable: bool = False) -> Any:
    return _checked("a mapping of keys to values", lambda v: isinstance(v, Mapping), nullable)


def anything() -> Any:
    return Annotated[Any, PlainValidator(lambda v: v)]


_DEVICE_LIST = re.compile(r"-1|\d+|(\d+\s*,\s*)*\d+\s*,?")


def devices_value(value: Any) -> Any:
    ok = (isinstance(value, int) and not isinstance(value, bool) and (value >= 1 or value == -1)) \
        or value == "auto" \
        or (isinstance(value, str) and _DEVICE_LIST.fullmatch(value.strip())) \
        or (isinstance(value, (list, tuple)) and value
            and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in value))
    if not ok:
        raise _refuse("an integer >= 1, -1 (all), 'auto', or a list of device indices")
    return value


