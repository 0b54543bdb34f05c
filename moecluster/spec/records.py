"""What flows between head and node: a task description in, a result record out.

Both are frozen dataclasses of plain values, so Ray ships them as they are and the store
keeps them as JSON (`to_dict` / `from_dict`). The head builds `TaskSpec`s from a sweep;
the node's runner turns one into a `TaskResult`. Nothing here knows of Ray or torch.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

Kind = Literal["dense", "moe"]
Status = Literal["ok", "failed"]


@dataclass(frozen=True)
class TaskSpec:
    """One measured model run.

    `model` holds the workload's own shape parameters (for `mlp`: `input_dim`,
    `output_dim`, and for `moe` `num_experts`, `expert_hidden_dim`, `expert_num_layers`,
    `top_k`; for `dense` `hidden_dim`, `num_layers`; for `llm` the fields of `LlmShape`, its family
    in `architecture`); the workload validates them.
    `impl` is `dense` for a dense task, else the MoE implementation. `match` says how a
    dense twin was sized (`total`, `active`, `seed`) and is None for an MoE task.

    `cuda_graphs`: None (default) captures a CUDA graph wherever the model allows it and
    records why where it does not; True requires one (the task fails otherwise); False runs
    eagerly, the seed's way. `reverse_order`: this pair's rounds start from its last task
    (pairs alternate which side starts, so an order effect cancels across a sweep).

    `replicate` (1-based) of `replicates`: the independent process this task is part of, when a sweep
    measures each pair several times (its pair id then ends in `-r<replicate>`); 1 of 1 otherwise, and
    in records written before replicates existed.
    """

    task_id: str
    pair_id: str
    kind: Kind
    impl: str
    model: Mapping[str, int]
    workload: str = "mlp"
    preset: str | None = None  # set only where the shape is exactly the preset's
    # the name the sweep gave this model (its `name`; "<preset> (modified)" for an unnamed preset
    # with a field overridden); None for a plain preset or an unnamed custom shape
    model_name: str | None = None
    match: str | None = None
    run_id: str = "local"
    dtype: str = "float32"
    batch_size: int = 128
    device: str = "cuda"
    duration_s: float = 30.0
    warmup_s: float = 5.0
    repeats: int = 1
    compile: bool = False
    cuda_graphs: bool | None = None
    load: str = "router"
    zipf_s: float = 1.2
    train_epochs: int = 0
    seed: int = 0
    expert_parallel: int = 1
    meter: str = "auto"
    sample_power: bool = True
    reverse_order: bool = False
    replicate: int = 1
    replicates: int = 1
    # workload llm (`workloads.llm`): the transformers family, the phase measured, tokens per
    # prompt and generated per sequence, and whether transformers' own generate or moecluster's fast path runs
    architecture: str | None = None
    phase: str | None = None
    prompt_len: int = 0
    gen_tokens: int = 0
    path: str | None = None
    # workload serve (`workloads.serve`): the served model, its server and its load; None otherwise
    serve: ServeSpec | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["model"] = dict(self.model)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TaskSpec":
        names = {f.name for f in dataclasses.fields(cls)}
        d = dict(d)
        if d.get("serve"):
            d["serve"] = ServeSpec.from_dict(d["serve"])
        return cls(**{k: v for k, v in d.items() if k in names})

    def label(self) -> str:
        """Short human name: `moe/sorted`, `dense/total`."""
        return f"{self.kind}/{self.impl if self.kind == 'moe' else self.match}"


@dataclass(frozen=True)
class ServeSpec:
    """What a `serve` task runs: one served model behind an OpenAI-compatible server, under one load.

    Either `command` (a template with `{port}`, `{model}`, `{gpus}`, started by the node in its own
    process group on a free port) or `url` (a server already running on the node: the task meters the
    task's GPUs as they are). `model` is what `{model}` becomes and what requests name.

    The load is one of two: closed loop, `concurrency` requests kept in flight (`request_rate` None); or
    open loop, requests arriving at `request_rate` per second whatever the server does, their gaps drawn
    from a gamma distribution of shape `burstiness` (1: a Poisson process) seeded by `arrival_seed`, so
    every side of a pair sees the same arrivals; `max_in_flight` caps the requests sent and not yet
    answered (the rest wait at the client, still counted as queued), None for no cap; `concurrency` is 0.
    `max_tokens` caps each response, `output` says whether a response ends at the model's natural stop
    (`natural`) or is asked for exactly `max_tokens` (`fixed`). `prompts` are the user messages, sent
    round-robin. `log_dir`: where the server's log goes (the run directory's `servers/`), None for a
    temporary directory.
    """

    name: str
    model: str
    concurrency: int
    max_tokens: int
    prompts: tuple[str, ...]
    command: str | None = None
    url: str | None = None
    output: Literal["natural", "fixed"] = "natural"
    startup_timeout_s: float = 600.0
    request_timeout_s: float = 300.0
    log_dir: str | None = None
    request_rate: float | None = None
    burstiness: float = 1.0
    max_in_flight: int | None = None
    arrival_seed: int = 0

    def __post_init__(self) -> None:
        if self.request_rate is None:
            if self.concurrency < 1:
                raise ValueError("a closed-loop serve load needs concurrency >= 1")
        elif not (math.isfinite(self.request_rate) and self.request_rate > 0 and self.concurrency == 0
                  and math.isfinite(self.burstiness) and self.burstiness > 0
                  and (self.max_in_flight is None or self.max_in_flight >= 1)):
            raise ValueError("an open-loop serve load needs a finite request_rate > 0, burstiness > 0,"
                             " max_in_flight >= 1 or None, and concurrency 0")

    @property
    def load_id(self) -> str:
        """The load in a task id: `c8` (8 in flight) or `r2.5` (2.5 requests/s arriving)."""
        return f"c{self.concurrency}" if self.request_rate is None else f"r{self.request_rate:g}".replace("+", "")

    def load_label(self) -> str:
        """The load in words, for tables: `concurrency 8`, `request rate 2.5/s (Poisson, seed 0)`."""
        if self.request_rate is None:
            return f"concurrency {self.concurrency}"
        kind = "Poisson" if self.burstiness == 1.0 else f"gamma, burstiness {self.burstiness:g}"
        cap = f", at most {self.max_in_flight} in flight" if self.max_in_flight else ""
        return f"request rate {self.request_rate:g}/s ({kind}, seed {self.arrival_seed}{cap})"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ServeSpec":
        names = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in names}
        d["prompts"] = tuple(d.get("prompts", ()))
        return cls(**d)


@dataclass(frozen=True)
class Percentiles:
    """The 50th, 90th and 99th percentiles of one latency, in seconds (None where nothing was seen)."""

    p50: float | None = None
    p90: float | None = None
    p99: float | None = None


@dataclass(frozen=True)
class ServeWindow:
    """What the load generator saw in one energy window of a `serve` task (its `Window` holds the energy,
    the duration and the output tokens as `inferences`).

    `responses`: requests that ended inside the window; `output_tokens`: tokens streamed inside it (each
    response's tokens spread over its stream chunks); `input_tokens`: prompt tokens of requests whose first
    token came inside it; latencies over the responses that ended inside it: time to first token, time per
    output token after the first, and the gaps between streamed tokens; `in_flight`: requests in flight,
    averaged over the window from the client's timestamps; `running_batch`: the server's own count of
    running requests averaged over the window (its Prometheus `/metrics`), None where it has none.
    Open loop only (None in closed loop): `arrivals`, the requests whose scheduled arrival fell inside the
    window; `queued_open` / `queued_close`, the requests arrived and not yet answered (waiting at the client
    or in flight) when the window opened and closed. The window's achieved rate is `responses` over its
    duration, its offered rate `arrivals` over it.
    """

    responses: int
    output_tokens: int
    input_tokens: int
    ttft_s: Percentiles = Percentiles()
    tpot_s: Percentiles = Percentiles()
    itl_s: Percentiles = Percentiles()
    in_flight: float | None = None
    running_batch: float | None = None
    arrivals: int | None = None
    queued_open: int | None = None
    queued_close: int | None = None


@dataclass(frozen=True)
class ServeStats:
    """The serving side of a `serve` task's result.

    `server`: `started` (moecluster ran `command`) or `external` (a `url`); `note` says what that means for
    the energy; `command`: the command as run; `token_counts`: where token counts came from (`usage`, the
    server's own; `tokenizer`; `stream chunks`, one token a chunk); `log`: the server log's path on the node.
    """

    server: Literal["started", "external"]
    windows: tuple[ServeWindow, ...] = ()
    note: str = ""
    command: str = ""
    token_counts: str = "usage"
    log: str = ""
    metrics: str = ""  # the server metric read as the running batch, "" where none
    # open loop: why the figures are not those of the offered load (the server fell behind), "" where it kept up
    overload: str = ""

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ServeStats":
        windows = tuple(ServeWindow(**{**w, **{k: Percentiles(**w[k]) for k in ("ttft_s", "tpot_s", "itl_s")}})
                        for w in d.get("windows", ()))
        return cls(**{**d, "windows": windows})


@dataclass(frozen=True)
class ParamCounts:
    """Parameter accounting of one model (see `spec.mlp.shapes`)."""

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
    note: str | None = None  # e.g. why a fraction above 1 was possible
    items_per_batch: int | None = None  # items one batch holds (None in older records: the batch size)


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
    energy_resolution_j: float | None = None  # the reading's worst-case error from the counter's steps
    aligned: bool = False  # window edges placed on energy-counter updates
    position: int | None = None  # place of this window in its pair's sequence (0 = first)
    gpu_energy_j: tuple[float, ...] = ()  # per GPU of a gang, in the order of `TaskResult.gpus`


@dataclass(frozen=True)
class PhaseStat:
    """One phase of an expert-parallel step (`route`, `dispatch`, `experts`, `combine`).

    Times are per step, from CUDA events (host clock on CPU) in a timed pass outside the
    energy windows; `bytes_sent` is what the phase sends per step, summed over ranks;
    `energy_j` is per step summed over ranks, only where a window ran the phase alone and
    its energy was measured, else None.
    """

    name: str
    time_s: float  # mean over ranks
    time_max_s: float  # slowest rank
    bytes_sent: float = 0.0
    energy_j: float | None = None


@dataclass(frozen=True)
class AllToAllPoint:
    """The raw `all_to_all_single` at one message size, measured in the same task.

    Bandwidths as nccl-tests defines them for alltoall: algorithm bandwidth = bytes each
    rank sends / time; bus bandwidth = algbw × (n - 1) / n.
    """

    bytes_per_rank: float
    time_s: float
    algbw_bytes_per_s: float
    busbw_bytes_per_s: float
    energy_j: float | None = None  # per call, summed over ranks, when measured


@dataclass(frozen=True)
class GpuRecord:
    """One GPU a task ran on: which node and index, and its identity across reboots and moves (`uuid`,
    the board's `serial` where NVML reads one, else "")."""

    node: str
    index: int
    uuid: str
    name: str
    serial: str = ""


@dataclass(frozen=True)
class ChoiceMargin:
    """How clearly a form (or kernel, or dispatch) choice was won, measured at prepare (`workloads.race`).

    Why it is recorded: a choice that flips between processes adds noise to the figures; the margin says
    whether the replicates of a run could have chosen differently. `chosen`, `runner_up`: candidate labels
    ("grouped graph"); `margin`: the runner-up's seconds per call over the chosen one's − 1 (geometric mean
    of the ratios paired within each interleaved round; negative where the tie-break kept a candidate that
    measured slower within noise); `noise`: the smallest lead that counts as real: the measured 99 %
    half-width of that ratio over the rounds (`measured_noise`), at least `floor`; `tied`: every candidate
    within noise of the fastest, in tie-break order (the first is chosen; empty where the fastest led
    clearly); `rounds`: interleaved rounds timed (0: decided at screening, the runner-up more than the
    race range behind, its margin from one median each and no noise measured).
    """

    chosen: str
    runner_up: str | None = None
    margin: float | None = None
    noise: float | None = None
    measured_noise: float | None = None
    floor: float = 0.0
    tied: tuple[str, ...] = ()
    rounds: int = 0

    @property
    def within_noise(self) -> bool:
        """Two or more candidates could not be told apart: the tie-break order chose."""
        return len(self.tied) > 1

    def describe(self) -> str:
        """"sorted eager and grouped eager within noise (0.6 % < 1.1 %): chose sorted eager by tie-break order",
        "grouped graph ahead of sorted graph by 4.2 % (noise 1.1 %, 5 rounds)", or the only candidate."""
        if self.runner_up is None or self.margin is None:
            return f"{self.chosen}: the only candidate that ran"
        lead = f"{abs(self.margin) * 100:.1f} %"
        if self.noise is None:
            return f"{self.chosen} ahead of {self.runner_up} by {lead} at screening (one median each; not raced)"
        noise = f"{self.noise * 100:.1f} %" + (" floor" if self.noise <= self.floor else "")
        if self.within_noise:
            return (f"{' and '.join(self.tied)} within noise ({lead} < {noise}): chose {self.chosen} by"
                    f" tie-break order ({self.rounds} rounds)")
        return f"{self.chosen} ahead of {self.runner_up} by {lead} (noise {noise}, {self.rounds} rounds)"


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
    # how the model ran: the form chosen by measurement and the candidates' timings
    # (`layout`, `kernel`, `graph`, ...), so a reader sees that neither side was handicapped
    form: Mapping[str, str] = field(default_factory=dict)
    idle_settle_s: float | None = None  # how long the GPU took to settle before idle was read
    idle_note: str | None = None  # how idle was obtained (settled, timed out, cached for the run)
    drift: Mapping[str, float] = field(default_factory=dict)  # last / first window - 1, per figure
    warnings: tuple[str, ...] = ()
    world_size: int = 1  # ranks of the gang that measured this task (expert or data parallel)
    phases: tuple[PhaseStat, ...] = ()
    alltoall: tuple[AllToAllPoint, ...] = ()
    # how the task held its devices against other runs on the node (`node.device_lock`):
    # "exclusive" (at once), "waited" (for `device_wait_s`, another run had them), "unlocked" (no lock
    # could be taken: another run may have shared them; a warning says why); "" where not recorded
    device_access: str = ""
    device_wait_s: float = 0.0
    # how clearly the form in `form` won its choice (None: not recorded, as in records written before it)
    choice: ChoiceMargin | None = None
    serve: ServeStats | None = None  # workload serve: what the load generator saw, window by window

    # -- derived figures (means over windows) -------------------------------------------
    @property
    def items_per_batch(self) -> int:
        """Items (inferences, or tokens) one step produced, as the workload recorded it in the roofline
        (an LLM decode step is a batch of whole responses); the batch size where none was recorded."""
        recorded = self.roofline.items_per_batch if self.roofline is not None else None
        return max(1, recorded or self.spec.batch_size)

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
        d["windows"] = tuple(Window(**{**w, "gpu_energy_j": tuple(w.get("gpu_energy_j", ()))})
                             for w in d.get("windows", ()))
        d["phases"] = tuple(PhaseStat(**p) for p in d.get("phases", ()))
        d["alltoall"] = tuple(AllToAllPoint(**a) for a in d.get("alltoall", ()))
        d["roofline"] = Roofline(**d["roofline"]) if d.get("roofline") else None
        choice = d.get("choice")
        d["choice"] = ChoiceMargin(**{**choice, "tied": tuple(choice.get("tied", ()))}) if choice else None
        d["expert_tokens"] = tuple(d.get("expert_tokens", ()))
        d["warnings"] = tuple(d.get("warnings", ()))
        d["serve"] = ServeStats.from_dict(d["serve"]) if d.get("serve") else None
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def from_json(cls, text: str) -> "TaskResult":
        return cls.from_dict(json.loads(text))
