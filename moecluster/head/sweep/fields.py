"""The building blocks of the sweep's models, shared by the schema and the serve section: strict frozen models,
grid axes, counts, names, and the cross-field problem that names its key.

A leaf module (it imports only pydantic and the bounds), so `serve_schema` and `schema` both import it and
either can be imported first.
"""
from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from moecluster.head.sweep.bounds import MAX_COUNT

T = TypeVar("T")
#: Counts and sizes: positive, at most `bounds.MAX_COUNT`.
Count = Annotated[int, Field(gt=0, le=MAX_COUNT)]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class FieldProblem(ValueError):
    """A cross-field problem that names the key it belongs to (`loc`, relative to the model)."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


class _Strict(BaseModel):
    # allow_inf_nan=False: `duration_s: .inf` is one line naming the key, not a run that never ends.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


def _as_list(value: Any) -> Any:
    """A scalar becomes a one-value axis; a list stays a list (validated element-wise)."""
    return value if isinstance(value, list) else [value]


#: A grid axis: a scalar or a list in the file, always a list once validated.
Axis = Annotated[list[T], BeforeValidator(_as_list)]


def _unique(value: list[Any]) -> list[Any]:
    if not value:
        raise ValueError("empty list: a grid axis needs at least one value")
    if len(set(value)) != len(value):
        raise ValueError(f"duplicate values in {value}")
    return value
