"""How long a task will hold its GPU(s): a rough figure for the dry-run table, the ETA and the
watchdog, not a measurement.

The pair runner (see `moecluster.measure.pair`) runs every repeat as a fresh `run_task` call, so that
each window follows its own warm-up after the other model ran (A B B A): every repeat pays
the build (with the choice of its fastest form and a CUDA-graph capture), the warm-up and the
window itself. Idle power is read once per GPU and run, after the GPU settled (up to a minute),
which the estimate leaves out.
"""
from __future__ import annotations

from moecluster.spec.records import TaskSpec

BASE_BUILD_S = 2.0  # imports, weight init, input generation, form choice and capture of a small model
INIT_S_PER_PARAM = {"cuda": 2e-9, "cpu": 2e-8}  # weight init and copy, per parameter
COMPILE_S = {"cuda": 40.0, "cpu": 30.0}  # first torch.compile of a model in a fresh worker
TRAIN_S_PER_PARAM_EPOCH = {"cuda": 5e-9, "cpu": 5e-7}  # 10,000 samples per epoch (seed's task)


def build_estimate_s(spec: TaskSpec, params_total: int) -> float:
    """Seconds to build, compile and (optionally) train the model before its warm-up."""
    device = spec.device if spec.device in INIT_S_PER_PARAM else "cuda"
    s = BASE_BUILD_S + params_total * INIT_S_PER_PARAM[device]
    if spec.compile:
        s += COMPILE_S[device]
    if spec.train_epochs:
        s += spec.train_epochs * params_total * TRAIN_S_PER_PARAM_EPOCH[device]
    return s


def task_estimate_s(spec: TaskSpec, params_total: int) -> float:
    """Seconds the task occupies its GPU(s): every repeat builds, warms up and measures."""
    per_repeat = build_estimate_s(spec, params_total) + spec.warmup_s + spec.duration_s
    return spec.repeats * per_repeat


def watchdog_s(pair_estimate_s: float) -> float:
    """How long an attempt of a pair may run, from its own start, before the head gives up on it.

    A lost node or process is not the watchdog's business (the scheduler retries such a pair as
    soon as Ray reports the process or node gone), so the watchdog only catches a pair that hangs:
    twice the estimate, plus two minutes for what the estimate leaves out (the settled idle
    reading, up to a minute, and a slow first import on a cold node).
    """
    return 2.0 * pair_estimate_s + 120.0


# How often NVML's energy counter moved on the H100 here (about every 100 ms); other GPUs differ,
# and every window reports the resolution it actually had.
TYPICAL_COUNTER_PERIOD_S = 0.1


def short_window_warning(duration_s: float, device: str, meter: str, tolerance: float = 0.01) -> str | None:
    """A warning when windows are too short for the energy counter to resolve `tolerance` even
    unaligned (the runner aligns edges to counter updates, which does better; each window
    reports its own resolution), else None."""
    from moecluster.measure.meters.energy import min_window_s

    if device != "cuda" or meter in ("none", "fake"):
        return None
    bound = min_window_s(TYPICAL_COUNTER_PERIOD_S, tolerance)
    if duration_s >= bound:
        return None
    period_ms = TYPICAL_COUNTER_PERIOD_S * 1e3
    return (f"duration_s {duration_s:g}: NVML's energy counter moves about every {period_ms:.0f} ms,"
            f" so a window needs {bound:g} s to stay within {tolerance:.0%} without edge alignment; windows are"
            " aligned and each result states its energy resolution, but prefer longer windows")
