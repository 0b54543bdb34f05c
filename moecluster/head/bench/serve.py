"""`bench --workload serve`: one served model, or a served MoE and its dense comparison, at one load.

Each served model is a `url` of a server already running here or a `command` template that moecluster
starts, checked as a sweep checks them. `serve` is the serve options as `bench` parsed them (keyed by
their parameter names: `serve_url`, `serve_command`, `serve_model`, `request_rate`, ...).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moecluster.spec.extras import require_workload
from moecluster.spec.records import ServeSpec, TaskResult, TaskSpec
from moecluster.workloads.serve.template import template_problem

from moecluster.head.bench.pair import OnWindow, run_bench
from moecluster.head.errors import InputError

URL = re.compile(r"^https?://[^\s/]+(/[^\s]*)?$")


@dataclass(frozen=True)
class ServeBench:
    """The results: the served model alone, or the dense comparison then the MoE."""

    results: tuple[TaskResult, ...]


def _name(model: str) -> str:
    """A task name from a model's path or id: its last part, with what an id may not hold replaced."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", Path(model.rstrip("/")).name or model)[:60].lstrip("-.") or "served"


def _reach(url: str | None, command: str | None, flags: tuple[str, str]) -> dict[str, Any]:
    """The `url` or `command` of one served model, exactly one of them, checked as a sweep checks it."""
    if (url is None) == (command is None):
        raise InputError(f"give exactly one of {flags[0]} (a running server) or {flags[1]} (a server to start)")
    if url is not None and not URL.match(url):
        raise InputError(f"{flags[0]}: {url!r} is not an http(s) URL")
    if command is not None:
        problem = template_problem(command)
        if problem:
            raise InputError(f"{flags[1]}: {problem}")
    return {"url": url, "command": command}


def _load(serve: dict[str, Any], seed: int) -> dict[str, Any]:
    """The load's `ServeSpec` fields: closed loop (`--concurrency`) or open loop (`--request-rate`)."""
    rate = serve["request_rate"]
    if rate is None:
        for key, flag in (("burstiness", "--burstiness"), ("max_in_flight", "--max-in-flight")):
            if serve[key] is not None:
                raise InputError(f"{flag} is an option of an open-loop load: it needs --request-rate")
        return {"concurrency": serve["concurrency"] or 1}
    if serve["concurrency"] is not None:
        raise InputError("give --concurrency (requests kept in flight) or --request-rate (requests/s arriving),"
                         " not both")
    return {"concurrency": 0, "request_rate": rate, "burstiness": serve["burstiness"] or 1.0,
            "max_in_flight": serve["max_in_flight"], "arrival_seed": seed}


def _serve_fields(serve: dict[str, Any], seed: int) -> dict[str, Any]:
    """The `ServeSpec` fields both sides share: the load, the prompts, the response cap, the start-up limit."""
    from moecluster.head.sweep.serve_schema import DEFAULT_PROMPTS, MAX_PROMPTS, read_prompt_file

    load = _load(serve, seed)
    try:
        prompts = read_prompt_file(Path(serve["prompts_file"]), 200) if serve["prompts_file"] else \
            read_prompt_file(DEFAULT_PROMPTS, MAX_PROMPTS)
    except ValueError as exc:
        raise InputError(f"--prompts: {exc}") from None
    return dict(max_tokens=serve["max_tokens"] or 256, output=serve["serve_output"] or "natural", prompts=prompts,
                startup_timeout_s=serve["startup_timeout_s"] or 600.0, **load)


def _dense_spec(serve: dict[str, Any], match: str, pair_id: str, common_serve: dict[str, Any],
                common: dict[str, Any]) -> TaskSpec:
    """The dense comparison's task."""
    dense = serve["dense_model"]
    if dense is None:
        raise InputError("--dense-model: required with --dense-url or --dense-command")
    reach = _reach(serve["dense_url"], serve["dense_command"], ("--dense-url", "--dense-command"))
    d_total = None if serve["dense_params_total"] is None else round(serve["dense_params_total"])
    d_counts = {} if d_total is None else {"params_total": d_total, "params_active": d_total}
    return TaskSpec(task_id=f"{pair_id}-dense-{match}", kind="dense", impl="dense", match=match,
                    model_name=_name(dense), model=d_counts,
                    serve=ServeSpec(name=_name(dense), model=dense, **reach, **common_serve), **common)


def serve_specs(serve: dict[str, Any], *, device: str, duration_s: float, warmup_s: float, repeats: int, meter: str,
                seed: int, match: str) -> list[TaskSpec]:
    """The tasks: the served model alone, or the dense comparison then the MoE (dense first, as the A of A B)."""
    if serve["serve_model"] is None:
        raise InputError("--model: required with --workload serve (the model requests name)")
    served = _reach(serve["serve_url"], serve["serve_command"], ("--url", "--command"))
    pair = serve["dense_url"] is not None or serve["dense_command"] is not None
    if not pair and (serve["dense_model"] is not None or serve["dense_params_total"] is not None):
        raise InputError("--dense-model needs --dense-url or --dense-command")
    common_serve = _serve_fields(serve, seed)
    moe = serve["serve_model"]
    load_id = ServeSpec(name="x", model="x", **common_serve).load_id
    pair_id = f"bench-{_name(moe)}-{load_id}"
    in_flight = common_serve["concurrency"] or common_serve.get("max_in_flight") or 1
    common: dict[str, Any] = dict(pair_id=pair_id, run_id=f"bench-{os.getpid()}", workload="serve", device=device,
                                  duration_s=duration_s, warmup_s=warmup_s, repeats=repeats, meter=meter,
                                  batch_size=in_flight, dtype="bfloat16" if device == "cuda" else "float32")
    total, active = (None if v is None else round(v) for v in (serve["params_total"], serve["params_active"]))
    if total is not None and active is not None and active > total:
        raise InputError(f"--params-active: {active:,} is more than --params-total ({total:,})")
    counts = {k: v for k, v in (("params_total", total), ("params_active", active or total)) if v is not None}
    specs = [TaskSpec(task_id=f"{pair_id}-moe" if pair else pair_id, kind="moe", impl="served",
                      model_name=_name(moe), model=counts,
                      serve=ServeSpec(name=_name(moe), model=moe, **served, **common_serve), **common)]
    if pair:
        specs.insert(0, _dense_spec(serve, match, pair_id, common_serve, common))
    return specs


def bench_serve(serve: dict[str, Any], *, device: str | None, match: str, on_window: OnWindow,
                **common: Any) -> ServeBench:
    """The served model (and its dense comparison) measured here at the load given: a pair in counterbalanced
    windows, a started server restarting for every window; alone, all windows behind one start. `common`:
    the windows (duration, warm-up, repeats), the meter and the seed."""
    if match == "seed":
        raise InputError("--match seed: a served dense model matches total or active parameters")
    specs = serve_specs(serve, device=device or "cpu", match=match, **common)
    require_workload("serve", feature="bench --workload serve")
    return ServeBench(results=tuple(run_bench(specs, on_window)))
