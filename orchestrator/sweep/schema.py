"""The sweep file's schema: one typed model, validated once when the file is loaded.

A sweep speaks the vocabulary of `moecluster bench` (and of `TaskSpec`): models by preset
or explicit shape, `impl`, `dtype`, `batch_size`, `compile`, `match`, `duration_s`,
`warmup_s`, `repeats`, `expert_parallel`, `device`, ... Every key of `AXES` takes a single
value or a list; a list is a grid axis. Unknown keys are errors (`extra="forbid"`), and
types are strict: `batch_size: "128"` or `compile: 1` are rejected, not coerced.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from moecluster.agents.workloads.mlp.shapes import PRESETS, MoEShape, ShapeError

from .suggest import did_you_mean

# The vocabulary of `moecluster bench` (`models.IMPLS`, `workloads.base.DTYPES`; a test keeps
# them equal), spelt out here so that loading a sweep does not import torch.
Impl = Literal["naive", "sorted", "grouped"]
DType = Literal["float32", "bfloat16", "float16"]
Match = Literal["total", "active", "seed"]
Load = Literal["router", "zipf"]
Strategy = Literal["STRICT_PACK", "PACK", "SPREAD", "STRICT_SPREAD"]
T = TypeVar("T")

#: The keys that form the grid (a list on one of them multiplies the pairs), in id order.
AXES = ("impl", "dtype", "batch_size", "compile", "cuda_graphs", "load", "zipf_s", "train_epochs",
        "seed", "expert_parallel", "accelerator_type")


class FieldProblem(ValueError):
    """A cross-field problem that names the key it belongs to (`loc`, relative to the model)."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


class _Strict(BaseModel):
    # allow_inf_nan=False: `duration_s: .inf` is one line naming the key, not a run that never ends.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class ModelEntry(_Strict):
    """One MoE model: a preset (with optional field overrides) or an explicit shape."""

    preset: str | None = None
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    num_experts: int | None = Field(default=None, gt=0)
    expert_hidden_dim: int | None = Field(default=None, gt=0)
    expert_num_layers: int | None = Field(default=None, gt=0)
    top_k: int | None = Field(default=None, gt=0)
    input_dim: int | None = Field(default=None, gt=0)
    output_dim: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _shape_is_possible(self) -> "ModelEntry":
        self.shape()  # raises ValueError naming the field
        return self

    def shape(self) -> MoEShape:
        """The MoE shape this entry describes (the preset's, with any field overridden)."""
        fields = {k: getattr(self, k) for k in ("num_experts", "expert_hidden_dim", "expert_num_layers",
                                                "top_k", "input_dim", "output_dim")}
        given = {k: v for k, v in fields.items() if v is not None}
        if self.preset is not None:
            if self.preset not in PRESETS:
                raise FieldProblem(("preset",), f"unknown preset {self.preset!r}"
                                   f"{did_you_mean(self.preset, PRESETS)} (known: {', '.join(PRESETS)})")
            given = {**PRESETS[self.preset].__dict__, **given}
        else:
            missing = [k for k in ("num_experts", "expert_hidden_dim", "expert_num_layers", "top_k")
                       if k not in given]
            if missing:
                raise FieldProblem((), f"a model without a preset needs {', '.join(missing)}")
            if self.name is None:
                raise FieldProblem((), "a model without a preset needs a name")
        if given["top_k"] > given["num_experts"]:
            raise FieldProblem(("top_k",), f"top_k ({given['top_k']}) is larger than num_experts"
                               f" ({given['num_experts']})")
        try:
            return MoEShape(**given)
        except ShapeError as exc:
            raise FieldProblem((), str(exc)) from None

    @property
    def label(self) -> str:
        """The model's name in pair ids and tables: `name`, else the preset."""
        return self.name or self.preset or "custom"

    @property
    def is_plain_preset(self) -> bool:
        """True when the shape is exactly the preset's (no field overridden)."""
        return self.preset is not None and self.shape() == PRESETS[self.preset]


def _as_list(value: Any) -> Any:
    """A scalar becomes a one-value axis; a list stays a list (validated element-wise)."""
    return value if isinstance(value, list) else [value]


#: A grid axis: a scalar or a list in the file, always a list once validated.
Axis = Annotated[list[T], BeforeValidator(_as_list)]


class SweepFile(_Strict):
    """A whole sweep file. Grid axes are normalised to non-empty, duplicate-free lists."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=80)
    models: list[ModelEntry] = Field(min_length=1)
    # grid axes (a scalar or a list)
    impl: Axis[Impl] = ["grouped"]
    dtype: Axis[DType] = ["float32"]
    batch_size: Axis[Annotated[int, Field(gt=0)]] = [128]
    compile: Axis[bool] = [False]
    # None: capture a CUDA graph wherever the model allows (recorded where not); true: required;
    # false: eager, the seed's way
    cuda_graphs: Axis[Optional[bool]] = [None]
    load: Axis[Load] = ["router"]
    zipf_s: Axis[Annotated[float, Field(ge=0)]] = [1.2]
    train_epochs: Axis[Annotated[int, Field(ge=0)]] = [0]
    seed: Axis[Annotated[int, Field(ge=0)]] = [0]
    expert_parallel: Axis[Annotated[int, Field(gt=0)]] = [1]
    accelerator_type: Axis[Optional[Annotated[str, Field(min_length=1)]]] = [None]
    # dense twins: one per match mode, inside every pair
    match: Axis[Match] = ["total"]
    # true: the MoE implementations of one grid point share one set of dense twins (one pair
    # holds the twins and one MoE task per impl, in counterbalanced order on one GPU)
    share_twins: bool = False
    # measurement
    duration_s: float = Field(default=30.0, gt=0)
    warmup_s: float = Field(default=5.0, ge=0)
    repeats: int = Field(default=3, gt=0)
    device: Literal["cuda", "cpu"] = "cuda"
    meter: Literal["auto", "nvml", "fake", "none"] = "auto"
    sample_power: bool = True
    workload: Literal["mlp"] = "mlp"
    # scheduling
    placement_strategy: Strategy = "STRICT_PACK"

    @field_validator(*AXES, "match", mode="after")
    @classmethod
    def _non_empty_unique(cls, value: list[Any]) -> list[Any]:
        if not value:
            raise ValueError("empty list: a grid axis needs at least one value")
        if len(set(value)) != len(value):
            raise ValueError(f"duplicate values in {value}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "SweepFile":
        names = [m.label for m in self.models]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise FieldProblem(("models", names.index(dup[0], names.index(dup[0]) + 1)),
                               f"two models are named {dup[0]!r}; give one a distinct `name`")
        if self.device == "cpu" and True in self.cuda_graphs:
            raise FieldProblem(("cuda_graphs",), "CUDA graphs need device cuda")
        for i, model in enumerate(self.models):
            experts = model.shape().num_experts
            for ep in self.expert_parallel:
                if ep > 1 and experts % ep:
                    raise FieldProblem(("expert_parallel",), f"{ep} does not divide num_experts ({experts})"
                                       f" of models[{i}] ({model.label}): experts are split evenly over GPUs")
        for ep in self.expert_parallel:
            for batch in self.batch_size:
                if ep > 1 and batch % ep:
                    raise FieldProblem(("batch_size",), f"{batch} is not divisible by expert_parallel {ep}:"
                                       " the global batch is split evenly over the gang's ranks")
        return self

    def varying(self) -> list[str]:
        """The axes with more than one value, in `AXES` order."""
        return [a for a in AXES if len(getattr(self, a)) > 1]
