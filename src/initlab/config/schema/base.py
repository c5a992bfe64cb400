"""The base of every section: refuses keys it does not know (``OpenSection``: takes them)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic_core import PydanticCustomError

from initlab.config.schema.values import _refuse


class Section(BaseModel):
    """A config group: its keys are known, others are refused (``_open`` sections take more)."""

    model_config = ConfigDict(extra="allow", arbitrary_types_allowed=True)
    open_keys: ClassVar[bool] = False

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            raise _refuse("a mapping of keys to values")
        data = {k: v for k, v in data.items() if not str(k).startswith("_")}  # _target_ & co.
        if not cls.open_keys:
            known = list(cls.model_fields)
            for key in data:
                if key not in cls.model_fields:
                    raise PydanticCustomError(
                        "initlab_unknown_key", "{key} is not a key of this group",
                        {"key": str(key), "known": ", ".join(known)})
        return data


class OpenSection(Section):
    open_keys: ClassVar[bool] = True


# init: one model per family ------------------------------------------------------------------
