"""From pydantic's errors to one paragraph: the key, the value given, what is allowed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from initlab.config.schema.values import show
from initlab.errors import ConfigError


# ---- from pydantic's errors to one paragraph -------------------------------------------------
def _lookup(data: Any, loc: Sequence[Any]) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _key(prefix: str, loc: Sequence[Any]) -> str:
    out = prefix
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def refusal(key: str, value: Any, allowed: str, why: str | None = None) -> ConfigError:
    """The one paragraph: ``<key> = <value> is not allowed: [<why>; ]<allowed> is expected.``"""
    because = f"{why}; " if why else ""
    return ConfigError(f"{key} = {show(value)} is not allowed: {because}{allowed} is expected.",
                       key=key, value=value, allowed=allowed)


def check(schema: type[BaseModel], data: Any, prefix: str, label: str | None = None) -> BaseModel:
    """Validate ``data`` (the node at ``prefix``) against ``schema``; raise the first problem as
    a ``ConfigError``.  ``label`` names the node in messages about unknown keys."""
    try:
        return schema.model_validate(data)
    except ValidationError as err:
        raise _to_config_error(err, data, prefix, label) from None


def _to_config_error(err: ValidationError, data: Any, prefix: str,
                     label: str | None) -> ConfigError:
    first = err.errors(include_url=False)[0]
    loc, ctx, kind = tuple(first["loc"]), first.get("ctx") or {}, first["type"]
    if kind == "initlab_unknown_key":
        loc = (*loc, ctx["key"])
        key = _key(prefix, loc)
        value = _lookup(data, loc)
        group = (label if label and len(loc) == 1 else _key(prefix, loc[:-1])) or "the config"
        return ConfigError(
            f"{key} = {show(value)} is not allowed: {group} has no key {ctx['key']!r}; one of "
            f"its keys ({ctx['known']}) is expected.", key=key, value=value,
            allowed=f"one of the keys {ctx['known']}")
    key = _key(prefix, loc)
    if kind == "missing":
        return ConfigError(f"{key} is missing: a value is required.", key=key,
                           allowed="a value")
    value = first.get("input", _lookup(data, loc))
    allowed = ctx.get("expected") if kind == "initlab" else first["msg"]
    return refusal(key, value, allowed)
