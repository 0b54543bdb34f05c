"""What flows between head and node: a task description in, a result record out.

Both are frozen dataclasses of plain values, so Ray ships them as they are and the store
keeps them as JSON (`to_dict` / `from_dict`). The head builds `TaskSpec`s from a sweep;
the node's runner turns one into a `TaskResult`. Nothing here knows of Ray or torch.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

Kind = Literal["dense", "moe"]
Status = Literal["ok", "failed"]


@dataclass(frozen=True)
class TaskSpec:
    """One measured model run.

    `model` holds the workload's own shape parameters (for `mlp`: `input_dim`,
    `output_dim`, and for `moe` `num_experts`, `expert_hidden_dim`, `expert_num_layers`,
    `top_k`; for `dense` `hidden_dim`, `num_layers`); the workload validates them.
    `impl` is `dense` for a dense task, else the MoE implementation. `match` says how a
    dense twin was sized (`total`, `active`, `seed`) and is None for an MoE task.
    """

    task_id: str
    pair_id: str
    kind: Kind
    impl: str
    model: Mapping[str, int]
    workload: str = "mlp"
    preset: str | None = None
    match: str | None = None
    run_id: str = "local"
    dtype: str = "float32"
    batch_size: int = 128
    device: str = "cuda"
    duration_s: float = 30.0
    warmup_s: float = 5.0
    repeats: int = 1
    compile: bool = False
    cuda_graphs: bool = False
    load: str = "router"
    zipf_s: float = 1.2
    train_epochs: int = 0
    seed: int = 0
    expert_parallel: int = 1
    meter: str = "auto"
    sample_power: bool = True

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["model"] = dict(self.model)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TaskSpec":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def label(self) -> str:
        """Short human name: `moe/sorted`, `dense/total`."""
        return f"{self.kind}/{self.impl if self.kind == 'moe' else self.match}"


@dataclass(frozen=True)
class ParamCounts:
    """Parameter accounting of one model (see `agents.workloads.mlp.shapes`)."""

    total: int
    active_per_token: int
    router: int = 0
    experts: int = 0


@dataclass(frozen=True)
class Roofline:
    """How far a task was from its hardware limit.

    `time_s` is max(FLOPs / peak FLOP/s, bytes / peak B/s) for the work actually done in
    the window; `fraction` = time_s / measured seconds (1.0 = at the roofline).
    """

    flops_per_item: float
    bytes_per_batch: float
    peak_flops: float
    peak_bytes_per_s: float
    peak_source: str
    time_s: float
    fraction: float
    bound: Literal["compute", "memory"]


@dataclass(frozen=True)
class Window:
    """One repeat: a fixed measurement window."""

    inferences: int
    duration_s: float
    energy_j: float | None = None
    sampled_energy_j: float | None = None
    avg_power_w: float | None = None
    max_power_w: float | None = None
    started_at: float | None = None  # wall clock (time.time()) at the window's start


@dataclass(frozen=True)
class GpuRecord:
    node: str
    index: int
    uuid: str
    name: str


@dataclass(frozen=True)
class TaskResult:
    """Everything one task measured. `energy_source` is None exactly when energy is
    unavailable, and then `energy_unavailable_reason` says why (never a zero)."""

    spec: TaskSpec
    status: Status
    error: str | None = None
    node: str = ""
    gpus: tuple[GpuRecord, ...] = ()
    params: ParamCounts | None = None
    windows: tuple[Window, ...] = ()
    energy_source: str | None = None
    energy_unavailable_reason: str | None = None
    idle_power_w: float | None = None
    roofline: Roofline | None = None
    expert_tokens: tuple[int, ...] = ()
    versions: Mapping[str, str] = field(default_factory=dict)
    started_at: float = 0.0
    finished_at: float = 0.0

    # -- derived figures (means over windows) -------------------------------------------
    @property
    def inferences_per_s(self) -> float | None:
        vals = [w.inferences / w.duration_s for w in self.windows if w.duration_s > 0]
        return sum(vals) / len(vals) if vals else None

    @property
    def avg_power_w(self) -> float | None:
        vals = [w.avg_power_w for w in self.windows if w.avg_power_w is not None]
        return sum(vals) / len(vals) if vals else None

    @property
    def inferences_per_j(self) -> float | None:
        vals = [w.inferences / w.energy_j for w in self.windows if w.energy_j]
        return sum(vals) / len(vals) if vals else None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["spec"] = self.spec.to_dict()
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TaskResult":
        d = dict(d)
        d["spec"] = TaskSpec.from_dict(d["spec"])
        d["gpus"] = tuple(GpuRecord(**g) for g in d.get("gpus", ()))
        d["params"] = ParamCounts(**d["params"]) if d.get("params") else None
        d["windows"] = tuple(Window(**w) for w in d.get("windows", ()))
        d["roofline"] = Roofline(**d["roofline"]) if d.get("roofline") else None
        d["expert_tokens"] = tuple(d.get("expert_tokens", ()))
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def from_json(cls, text: str) -> "TaskResult":
        return cls.from_dict(json.loads(text))
