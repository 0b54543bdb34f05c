"""The sweep file's schema: one typed model, validated once when the file is loaded.

A sweep speaks the vocabulary of `moecluster bench` (and of `TaskSpec`): models by preset
or explicit shape, `impl`, `dtype`, `batch_size`, `compile`, `match`, `duration_s`,
`warmup_s`, `repeats`, `replicates`, `expert_parallel`, `device`, ... Every key of `AXES` takes a single
value or a list; a list is a grid axis. Unknown keys are errors (`extra="forbid"`), and
types are strict: `batch_size: "128"` or `compile: 1` are rejected, not coerced.

`workload` picks what is measured: `mlp` (the seed's MLPs, the default), `llm` (transformer
LLMs, `workloads.llm`), whose grid is `LLM_AXES`: `phase` (prefill, decode), `prompt_len`,
`gen_tokens`, `path` (fast, reference) beside `impl` (library, grouped), `dtype`, `batch_size`, or `serve`
(served models, `serve_schema`). One schema holds them all; what each workload takes is checked by its
plug-in (`moecluster.workloads`), which the loader passes as validation context (`plugin_context`):
a key or value of another workload is refused at load, naming the key.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Optional

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from moecluster.spec.llm.presets import PRESETS as LLM_PRESETS
from moecluster.spec.llm.presets import moe_preset
from moecluster.spec.llm.shapes import LlmShape, family
from moecluster.spec.mlp.shapes import PRESETS, MoEShape, ShapeError

from moecluster.head.sweep.bounds import MAX_COUNT, MAX_NAME_CHARS, MAX_REPLICATES, MAX_SEED, MAX_WINDOW_S, MAX_ZIPF_S
from moecluster.head.sweep.shown import clip, shown
from moecluster.head.sweep.suggest import did_you_mean
from moecluster.head.sweep.fields import NAME_PATTERN, Axis, Count, FieldProblem, _Strict, _unique
from moecluster.head.sweep.serve_schema import ServeSection

# The vocabulary of `moecluster bench` (`models.IMPLS`, `workloads.workload.DTYPES`; a test keeps
# them equal), spelt out here so that loading a sweep does not import torch.
Impl = Literal["naive", "sorted", "grouped", "library"]
MLP_IMPLS = ("naive", "sorted", "grouped")
LLM_IMPLS = ("library", "grouped")  # the llm workload's (`llm.workload.IMPLS`)
#: The workload a sweep names when it names none.
DEFAULT_WORKLOAD = "mlp"
Phase = Literal["prefill", "decode"]
LlmPath = Literal["fast", "reference"]
DType = Literal["float32", "bfloat16", "float16"]
Match = Literal["total", "active", "seed"]
Load = Literal["router", "zipf"]
Strategy = Literal["STRICT_PACK", "PACK", "SPREAD", "STRICT_SPREAD"]
#: Counts and sizes may also be zero (`Count`: positive; both at most `bounds.MAX_COUNT`).
Count0 = Annotated[int, Field(ge=0, le=MAX_COUNT)]
#: Independent processes per pair when a sweep does not say: three, so that a plain `submit` gives
#: intervals over what moves a result between runs (the build, the form chosen, the idle reading, the
#: GPU where there are several), t with 2 degrees of freedom; one replicate has only its windows' spread.
REPLICATES_DEFAULT = 3

#: The keys that form the grid (a list on one of them multiplies the pairs), in id order.
AXES = ("impl", "dtype", "batch_size", "compile", "cuda_graphs", "load", "zipf_s", "train_epochs",
        "seed", "expert_parallel", "accelerator_type")
#: The grid of workload llm, in id order.
LLM_AXES = ("impl", "dtype", "batch_size", "phase", "prompt_len", "gen_tokens", "path", "cuda_graphs", "seed",
            "expert_parallel", "accelerator_type")  # expert_parallel: the transformer MoE's EP (issue 25)
#: The grid of workload serve (its values under `serve:`).
SERVE_AXES = ("concurrency", "request_rate", "accelerator_type")
LLM_ONLY = ("phase", "prompt_len", "gen_tokens", "path")
MLP_ONLY = ("compile", "load", "zipf_s", "train_epochs")
MLP_MODEL_FIELDS = ("expert_hidden_dim", "expert_num_layers", "input_dim", "output_dim")
LLM_MODEL_FIELDS = ("architecture", "vocab_size", "hidden_size", "num_layers", "num_heads", "num_kv_heads", "head_dim",
                    "intermediate_size", "shared_intermediate_size")


class ModelEntry(_Strict):
    """One MoE model: a preset (with optional field overrides) or an explicit shape.

    The fields of the seed's MLPs and those of transformer LLMs (`architecture`, `hidden_size`, ...)
    share this entry; the sweep's `workload` (passed as validation context) says which apply.
    """

    preset: str | None = Field(default=None, max_length=MAX_NAME_CHARS)
    name: str | None = Field(default=None, pattern=NAME_PATTERN, max_length=MAX_NAME_CHARS)
    num_experts: Count | None = None
    expert_hidden_dim: Count | None = None
    expert_num_layers: Count | None = None
    top_k: Count | None = None
    input_dim: Count | None = None
    output_dim: Count | None = None
    # workload llm
    architecture: str | None = Field(default=None, max_length=MAX_NAME_CHARS)
    vocab_size: Count | None = None
    hidden_size: Count | None = None
    num_layers: Count | None = None
    num_heads: Count | None = None
    num_kv_heads: Count | None = None
    head_dim: Count | None = None
    intermediate_size: Count | None = None
    shared_intermediate_size: Count0 | None = None

    @model_validator(mode="after")
    def _shape_is_possible(self, info: ValidationInfo) -> "ModelEntry":
        _plugin(info).check_model(self)  # raises FieldProblem naming the field
        return self

    def foreign_fields(self, fields: tuple[str, ...], owner: str, workload: str) -> None:
        """FieldProblem naming the first of `fields` (another workload's, `owner`'s) that this entry sets."""
        for key in fields:
            if getattr(self, key) is not None:
                raise FieldProblem((key,), f"is a field of workload {owner}; this sweep's workload is {workload}")

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

    def llm_shape(self) -> LlmShape:
        """The LLM MoE this entry describes (an MoE preset of `llm.presets`, fields overridden, or every
        field given with a `name`)."""
        keys = ("num_experts", "top_k", *LLM_MODEL_FIELDS)
        given = {k: getattr(self, k) for k in keys if getattr(self, k) is not None}
        try:
            if self.preset is not None:
                if self.preset not in LLM_PRESETS:
                    moe_preset(self.preset)  # raises, naming the closest presets
                return moe_preset(self.preset, **given)
            if self.architecture is not None:
                family(self.architecture)  # an unknown one is named first, with the closest known ones
            missing = [k for k in ("architecture", "vocab_size", "hidden_size", "num_layers", "num_heads",
                                   "num_kv_heads", "head_dim", "intermediate_size", "num_experts", "top_k")
                       if k not in given]
            if missing:
                raise FieldProblem((), f"an llm model without a preset needs {', '.join(missing)}")
            if self.name is None:
                raise FieldProblem((), "a model without a preset needs a name")
            shape = LlmShape(**given)
        except ShapeError as exc:
            text = str(exc)
            loc: tuple[str | int, ...] = ("preset",) if text.startswith(("unknown llm preset", "llm preset")) else \
                ("architecture",) if text.startswith("unknown architecture") else ()
            raise FieldProblem(loc, text) from None
        if not shape.is_moe:
            raise FieldProblem(("architecture",), f"{shape.architecture} is dense: a sweep model is an MoE, whose"
                               " dense twins are sized from it")
        return shape

    @property
    def is_plain_llm_preset(self) -> bool:
        """True when the LLM shape is exactly the preset's (no field overridden)."""
        return self.preset in LLM_PRESETS and self.llm_shape() == LLM_PRESETS[self.preset].shape

    @property
    def label(self) -> str:
        """The model's name in pair ids and tables: `name`, else the preset."""
        return self.name or self.preset or "custom"

    def given_name(self, plain_preset: bool) -> str | None:
        """The name a task records for this model (`TaskSpec.model_name`): `name`, else
        "<preset> (modified)" where a field overrides the preset's (`plain_preset` False), else None."""
        if self.name:
            return self.name
        return f"{self.preset} (modified)" if self.preset is not None and not plain_preset else None

    @property
    def is_plain_preset(self) -> bool:
        """True when the shape is exactly the preset's (no field overridden)."""
        return self.preset is not None and self.shape() == PRESETS[self.preset]


class LlmGrid(_Strict):
    """One part of an LLM sweep's grid (`grids:`): the axes it gives replace the sweep's own, so one sweep
    can measure decode over batch sizes and prefill over prompt lengths without multiplying the two."""

    impl: Optional[Axis[Impl]] = None
    dtype: Optional[Axis[DType]] = None
    batch_size: Optional[Axis[Count]] = None
    phase: Optional[Axis[Phase]] = None
    prompt_len: Optional[Axis[Count]] = None
    gen_tokens: Optional[Axis[Count]] = None
    path: Optional[Axis[LlmPath]] = None
    cuda_graphs: Optional[Axis[Optional[bool]]] = None

    @field_validator("*", mode="after")
    @classmethod
    def _non_empty_unique(cls, value: Any) -> Any:
        return value if value is None else _unique(value)


class SweepFile(_Strict):
    """A whole sweep file. Grid axes are normalised to non-empty, duplicate-free lists."""

    name: str = Field(pattern=NAME_PATTERN, max_length=MAX_NAME_CHARS)
    # required for workloads mlp and llm (`_consistent`); a serve sweep's models are under `serve`
    models: list[ModelEntry] = []
    # grid axes (a scalar or a list)
    impl: Axis[Impl] = ["grouped"]
    dtype: Axis[DType] = ["float32"]
    batch_size: Axis[Count] = [128]
    compile: Axis[bool] = [False]
    # None: capture a CUDA graph wherever the model allows (recorded where not); true: required;
    # false: eager, the seed's way
    cuda_graphs: Axis[Optional[bool]] = [None]
    load: Axis[Load] = ["router"]
    zipf_s: Axis[Annotated[float, Field(ge=0, le=MAX_ZIPF_S)]] = [1.2]
    train_epochs: Axis[Count0] = [0]
    seed: Axis[Annotated[int, Field(ge=0, le=MAX_SEED)]] = [0]
    expert_parallel: Axis[Count] = [1]
    # Ray's accelerator types (`H100`, `A100-80G`, ...): a name, as a node advertises it
    accelerator_type: Axis[Optional[Annotated[str, Field(min_length=1, max_length=MAX_NAME_CHARS,
                                                         pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+:-]*$")]]] = [None]
    # dense twins: one per match mode, inside every pair
    match: Axis[Match] = ["total"]
    # true: the MoE implementations of one grid point share one set of dense twins (one pair
    # holds the twins and one MoE task per impl, in counterbalanced order on one GPU)
    share_twins: bool = False
    # measurement
    duration_s: float = Field(default=30.0, gt=0, le=MAX_WINDOW_S)
    warmup_s: float = Field(default=5.0, ge=0, le=MAX_WINDOW_S)
    repeats: int = Field(default=3, gt=0, le=MAX_COUNT)
    # independent processes per pair (fresh build, form choice and idle reading each), queued apart
    replicates: int = Field(default=REPLICATES_DEFAULT, gt=0, le=MAX_REPLICATES)
    device: Literal["cuda", "cpu"] = "cuda"
    meter: Literal["auto", "nvml", "fake", "none"] = "auto"
    sample_power: bool = True
    workload: str = DEFAULT_WORKLOAD
    # workload llm: phases measured apart, tokens per prompt and generated per sequence (decode), and the
    # path: moecluster's fast one (static KV cache, CUDA graphs) or transformers' generate as users call it
    phase: Axis[Phase] = ["prefill", "decode"]
    prompt_len: Axis[Count] = [512]
    gen_tokens: Axis[Count] = [128]
    path: Axis[LlmPath] = ["fast"]
    # workload llm: several grids in one sweep, each replacing some of the axes above (e.g. decode over
    # batch sizes and prefill over prompt lengths); absent, the one grid of the axes above
    grids: Optional[list[LlmGrid]] = Field(default=None, min_length=1)
    # workload serve: served models in pairs, prompts, output policy and load (`serve_schema.ServeSection`)
    serve: Optional["ServeSection"] = None
    # scheduling
    placement_strategy: Strategy = "STRICT_PACK"

    @field_validator(*AXES, *LLM_ONLY, "match", mode="after")
    @classmethod
    def _non_empty_unique(cls, value: list[Any]) -> list[Any]:
        return _unique(value)

    # the workload's plug-in (`moecluster.workloads.base.WorkloadPlugin`), set once validated (`_consistent`);
    # typed Any: the schema imports nothing of the plug-ins, which import it
    _plugin: Any = PrivateAttr(default=None)

    @field_validator("workload", mode="after")
    @classmethod
    def _known_workload(cls, value: str, info: ValidationInfo) -> str:
        names = list(_workloads(info))
        if value not in names:
            raise ValueError(f"{shown(value)} is not one of {', '.join(names)}{did_you_mean(clip(value), names)}")
        return value

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> "SweepFile":
        plugin = _workloads(info)[self.workload]
        plugin.check_sweep(self)
        self._plugin = plugin
        return self

    def check_models(self) -> None:
        """The checks of a sweep that measures `models` (MLP and LLM): given, named apart, no `serve`
        section, no CUDA graph required on a CPU."""
        if not self.models:
            raise FieldProblem(("models",), "must not be empty" if "models" in self.model_fields_set
                               else "required key is missing")
        if self.serve is not None:
            raise FieldProblem(("serve",), f"is the section of workload serve (this sweep's workload is"
                               f" {self.workload})")
        names = [m.label for m in self.models]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise FieldProblem(("models", names.index(dup[0], names.index(dup[0]) + 1)),
                               f"two models are named {dup[0]!r}; give one a distinct `name`")
        if self.device == "cpu" and True in self.cuda_graphs:
            raise FieldProblem(("cuda_graphs",), "CUDA graphs need device cuda")

    def check_expert_parallel(self, experts: list[int], batches: set[int]) -> None:
        """Every expert-parallel degree divides each model's experts (`experts`, in `models` order) and every
        batch size the grids use: experts and the global batch are split evenly over the gang's GPUs."""
        for i, (model, n) in enumerate(zip(self.models, experts)):
            for ep in self.expert_parallel:
                if ep > 1 and n % ep:
                    raise FieldProblem(("expert_parallel",), f"{ep} does not divide num_experts ({n})"
                                       f" of models[{i}] ({model.label}): experts are split evenly over GPUs")
        for ep in self.expert_parallel:
            for batch in sorted(batches):
                if ep > 1 and batch % ep:
                    raise FieldProblem(("batch_size",), f"{batch} is not divisible by expert_parallel {ep}:"
                                       " the global batch is split evenly over the gang's ranks")

    def foreign_keys(self, keys: tuple[str, ...], owner: str) -> None:
        """FieldProblem naming the first of `keys` (another workload's, `owner`'s) set off its default."""
        given = self.model_fields_set  # a key at its default passes (a resolved sweep, dumped, lists them all)
        for key in keys:
            if key in given and getattr(self, key) != SweepFile.model_fields[key].default:
                raise FieldProblem((key,), f"is a key of workload {owner} (this sweep's workload is {self.workload})")

    def unimplemented_keys(self, keys: tuple[str, ...]) -> None:
        """FieldProblem naming the first of `keys` given a value other than its default, which this
        sweep's workload does not implement."""
        for key in keys:
            default = SweepFile.model_fields[key].default
            if key in self.model_fields_set and getattr(self, key) != default:
                values = ", ".join(str(v) for v in getattr(self, key))
                raise FieldProblem((key,), f"{values} is not implemented for workload {self.workload} (it takes"
                                   f" {', '.join(str(v) for v in default)} only)")

    def only_keys(self, own: set[str], listed: str) -> None:
        """FieldProblem naming the first key set off its default that is not in `own` (`listed` names them)."""
        for key in sorted(self.model_fields_set - own - {"models"}, key=list(SweepFile.model_fields).index):
            if getattr(self, key) != SweepFile.model_fields[key].default:
                raise FieldProblem((key,), f"is not a key of workload {self.workload} (it takes {listed})")

    def grid_count(self, grid: Mapping[str, list[Any]]) -> tuple[int, str]:
        """Tasks of one grid of `models` (every model × every axis' values × tasks per pair) and the product."""
        axes = [a for a in grid if not (self.share_twins and a == "impl")]
        sizes = [(len(self.models), "models")] + [(len(grid[a]), a) for a in axes]
        per_pair = len(self.match) + (len(grid["impl"]) if self.share_twins else 1)
        count = math.prod(n for n, _ in sizes) * per_pair
        factors = [f"{n:,} {name}" for n, name in sizes if n > 1] + [f"{per_pair} tasks per pair"]
        return count, " × ".join(factors)

    def llm_grids(self) -> list[dict[str, list[Any]]]:
        """The LLM grids: each `grids` entry's axes over the sweep's own, or the sweep's own alone."""
        own = {a: list(getattr(self, a)) for a in LLM_AXES}
        if not self.grids:
            return [own]
        return [{**own, **{k: v for k, v in g.model_dump().items() if v is not None}} for g in self.grids]

    def grid_axes(self) -> tuple[str, ...]:
        """The keys that form this sweep's grid, in id order (its workload's `grid_axes`)."""
        axes: tuple[str, ...] = self._plugin.grid_axes
        return axes

    def varying(self) -> list[str]:
        """The axes with more than one value (in any LLM grid), in `grid_axes()` order."""
        varying: list[str] = self._plugin.varying(self)
        return varying


def plugin_context(workloads: Mapping[str, Any], workload: str) -> dict[str, Any]:
    """The validation context a sweep is validated with: the registered workloads (`registry.WORKLOADS`) and
    the name the file gives (its `models` entries are checked by that workload, or the default's where the
    name is unknown: the name itself is refused apart)."""
    return {"workloads": workloads, "workload": workload if workload in workloads else DEFAULT_WORKLOAD}


def _workloads(info: ValidationInfo) -> Mapping[str, Any]:
    context = info.context or {}
    if "workloads" not in context:
        raise TypeError("a sweep is validated with its workloads as context (`plugin_context`; `loader.parse_sweep`"
                        " gives it)")
    workloads: Mapping[str, Any] = context["workloads"]  # name → `WorkloadPlugin`
    return workloads


def _plugin(info: ValidationInfo) -> Any:
    return _workloads(info)[(info.context or {})["workload"]]

