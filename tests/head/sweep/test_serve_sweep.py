"""Serve sweeps (`workload: serve`): served pairs expand into counterbalanced tasks over the concurrency axis;
prompts from the default set, a JSONL or ShareGPT file, or synthetic lengths; bad input is one line naming
the key; a resolved sweep reloads to itself."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml

from moecluster.head.run.plan import plan_new
from moecluster.head.sweep import SweepError, SweepFile, expand, load_sweep, parse_sweep
from moecluster.head.sweep.estimate import watchdog_s
from moecluster.head.sweep.size import task_count

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
SERVE = """\
name: served
workload: serve
replicates: 1  # one process per pair: this test counts pairs and tasks
serve:
  concurrency: [1, 8]
  max_tokens: 64
  pairs:
    - name: qwen3
      moe: {name: qwen3-moe, model: Qwen/Qwen3-30B-A3B, params_total: 30.5e9, params_active: 3.3e9,
            command: "vllm serve {model} --port {port}"}
      dense:
        - {name: qwen3-dense, match: total, model: Qwen/Qwen3-32B, params_total: 32.8e9,
           command: "vllm serve {model} --port {port}"}
        - {name: qwen3-small, match: active, model: Qwen/Qwen3-4B, params_total: 4.0e9, url: "http://127.0.0.1:9000"}
"""


def error_of(text: str, path: Path = Path("sweep.yaml")) -> str:
    with pytest.raises(SweepError) as info:
        parse_sweep(textwrap.dedent(text), path)
    problems = info.value.problems  # each its own line, the first in the message
    assert problems and all("\n" not in p for p in problems) and str(info.value).startswith(problems[0])
    return " | ".join(problems)


def prompts_of(sweep: SweepFile) -> tuple[str, ...]:
    """The prompts the sweep's first task sends."""
    serve = expand(sweep).tasks[0].serve
    assert serve is not None
    return serve.prompts


def test_a_served_pair_expands_per_concurrency_level_dense_first_alternating_which_side_opens() -> None:
    sweep = parse_sweep(SERVE)
    plan = expand(sweep, run_id="r")
    assert [p.pair_id for p in plan.pairs] == ["qwen3-c1", "qwen3-c8"]
    assert [t.task_id for t in plan.pairs[1].tasks] == ["qwen3-c8-dense-total", "qwen3-c8-dense-active", "qwen3-c8-moe"]
    assert [p.tasks[0].reverse_order for p in plan.pairs] == [False, True]
    moe = plan.pairs[0].tasks[-1]
    assert moe.workload == "serve" and moe.kind == "moe" and moe.serve is not None
    assert moe.model == {"params_total": 30_500_000_000, "params_active": 3_300_000_000}
    assert (moe.serve.concurrency, moe.serve.max_tokens, moe.serve.output) == (1, 64, "natural")
    assert moe.serve.command == "vllm serve {model} --port {port}" and moe.serve.url is None
    small = plan.pairs[0].tasks[1]
    assert small.serve is not None and small.serve.url == "http://127.0.0.1:9000" and small.serve.command is None
    assert small.model["params_active"] == 4_000_000_000  # a dense model's active parameters are its total
    assert len(moe.serve.prompts) >= 20  # the committed default set
    assert plan.pairs[0].params_active == (32_800_000_000, 4_000_000_000, 3_300_000_000)
    assert task_count(sweep)[0] == len(plan.tasks) == 6


def test_a_run_puts_server_logs_in_its_directory(tmp_path: Path) -> None:
    sweep = tmp_path / "s.yaml"
    sweep.write_text(SERVE)
    run = plan_new(sweep, {}, tmp_path / "runs", "r1", 1000)
    assert {t.serve.log_dir for t in run.plan.tasks if t.serve} == {str((tmp_path / "runs" / "r1" / "servers"))}


def test_the_resolved_sweep_reloads_to_the_same_sweep() -> None:
    sweep = parse_sweep(SERVE)
    assert parse_sweep(yaml.safe_dump(sweep.model_dump(mode="json", exclude_none=True))) == sweep


def test_prompts_from_jsonl_sharegpt_and_synthetic_lengths(tmp_path: Path) -> None:
    (tmp_path / "p.jsonl").write_text('{"prompt": "one"}\n\n{"text": "two"}\n{"prompt": "three"}\n')
    (tmp_path / "share.json").write_text(json.dumps([
        {"conversations": [{"from": "system", "value": "be brief"}, {"from": "human", "value": "hello?"},
                           {"from": "gpt", "value": "hi"}]},
        {"conversations": [{"from": "human", "value": "why?"}]}]))
    base = SERVE.replace("  max_tokens: 64\n", "  max_tokens: 64\n  prompts: {}\n")
    jsonl = parse_sweep(base.replace("prompts: {}", "prompts: {file: p.jsonl, limit: 2}"), tmp_path / "s.yaml")
    assert prompts_of(jsonl) == ("one", "two")
    share = parse_sweep(base.replace("prompts: {}", f"prompts: {{file: {tmp_path / 'share.json'}}}"))
    assert prompts_of(share) == ("hello?", "why?")
    prompts = prompts_of(parse_sweep(base.replace("prompts: {}", "prompts: {synthetic: {words: 12, count: 3}}")))
    assert len(prompts) == 3 and all(len(p.split()) == 12 for p in prompts) and len(set(prompts)) == 3


@pytest.mark.parametrize("old, new, culprit", [
    ("      moe: {name: qwen3-moe,", "      moe: {nam: qwen3-moe,",
     "serve.pairs[0].moe.nam: unknown key (did you mean 'name'?)"),
    ('command: "vllm serve {model} --port {port}"}\n      dense', 'command: "vllm serve {model}"}\n      dense',
     "serve.pairs[0].moe.command: has no {port}"),
    ('command: "vllm serve {model} --port {port}"}\n      dense', 'command: "vllm --port {port} {gpu}"}\n      dense',
     "unknown placeholder {gpu}"),
    ("params_active: 3.3e9", "params_active: 40e9", "serve.pairs[0].moe.params_active: 40,000,000,000 is more than"),
    ("params_total: 30.5e9, params_active: 3.3e9,", "params_total: 30.5e9,",
     "serve.pairs[0].moe.params_active: an MoE needs its active parameters"),
    ("  concurrency: [1, 8]", "  concurrency: [1, 1]", "serve.concurrency: duplicate values"),
    ("  concurrency: [1, 8]", "  concurrency: [0]", "serve.concurrency[0]: must be greater than 0"),
    ("  max_tokens: 64", "  max_tokens: '64'", "serve.max_tokens: expected an integer, got '64'"),
    ("  max_tokens: 64", "  max_tokens: 64\n  output: fixd", "serve.output: 'fixd' is not one of natural, fixed"),
    ('url: "http://127.0.0.1:9000"', 'url: "http://127.0.0.1:9000", command: "x --port {port}"',
     "give exactly one of command"),
    ('url: "http://127.0.0.1:9000"', 'url: "file:///etc/passwd"', "serve.pairs[0].dense[1].url"),
    ("match: active", "match: total", "serve.pairs[0].dense[1].match: two dense models match 'total'"),
    ("workload: serve\n", "workload: serve\nbatch_size: 8\n", "batch_size: is not a key of workload serve"),
    ("workload: serve\n", "workload: serve\nmodels: [{preset: small}]\n", "models: workload serve names its"),
    ("  pairs:", "  prompts: {file: /no/such.jsonl}\n  pairs:", "serve.prompts: /no/such.jsonl: cannot read"),
])
def test_bad_serve_input_is_one_line_naming_the_culprit(old: str, new: str, culprit: str) -> None:
    assert old in SERVE
    text = SERVE.replace(old, new)
    if "/no/such.jsonl" in new:
        with pytest.raises(SweepError, match="cannot read") as info:
            expand(parse_sweep(text))
        assert culprit in str(info.value)
        return
    assert culprit in error_of(text)


def test_a_serve_section_needs_workload_serve_and_workload_serve_needs_it() -> None:
    assert "serve: is the section of workload serve" in error_of(
        "name: x\nmodels: [{preset: small}]\n" + SERVE[SERVE.index("serve:"):])
    assert "serve: workload serve needs a serve section" in error_of("name: x\nworkload: serve\n")
    assert "models: required key is missing" in error_of("name: x\nimpl: grouped\n")


def test_the_shipped_example_loads() -> None:
    plan = expand(load_sweep(EXAMPLES / "served-tiny.yaml"))
    assert [p.pair_id for p in plan.pairs] == ["tiny-c1", "tiny-c4"]
    assert all(t.serve is not None and t.serve.model.startswith("~/.cache/moecluster/served-tiny/") for t in plan.tasks)
    poisson = expand(load_sweep(EXAMPLES / "served-tiny-poisson.yaml"))
    assert [p.pair_id for p in poisson.pairs] == ["tiny-r2", "tiny-r6"]
    assert all(t.serve is not None and t.serve.request_rate in (2.0, 6.0) and t.serve.max_in_flight == 32
               for t in poisson.tasks)


def test_the_watchdog_never_cuts_off_a_server_still_within_its_startup_bound() -> None:
    sweep = parse_sweep(SERVE.replace("  max_tokens: 64", "  max_tokens: 64\n  startup_timeout_s: 900"))
    for pair in expand(sweep).pairs:
        bound = sum(t.repeats * (900 + t.warmup_s + t.duration_s) for t in pair.tasks)
        assert watchdog_s(pair.total_estimated_s) > bound


OPEN = SERVE.replace("  concurrency: [1, 8]\n", "  request_rate: [0.5, 4]\n  max_in_flight: 16\n  arrival_seed: 5\n")


def test_an_open_loop_expands_per_request_rate_and_every_side_gets_the_same_arrivals() -> None:
    from moecluster.measure.serve import load_of

    sweep = parse_sweep(OPEN)
    plan = expand(sweep, run_id="r")
    assert [p.pair_id for p in plan.pairs] == ["qwen3-r0.5", "qwen3-r4"]
    assert [t.task_id for t in plan.pairs[1].tasks] == ["qwen3-r4-dense-total", "qwen3-r4-dense-active", "qwen3-r4-moe"]
    assert sweep.varying() == ["request_rate"] and task_count(sweep)[1].startswith("1 served pairs × 2 request_rate")
    for pair, rate in zip(plan.pairs, (0.5, 4.0)):
        specs = [t.serve for t in pair.tasks]
        assert all(s is not None and (s.request_rate, s.concurrency, s.burstiness, s.max_in_flight, s.arrival_seed)
                   == (rate, 0, 1.0, 16, 5) for s in specs)
        schedules = []
        for s in specs:
            assert s is not None
            arrivals = load_of(s, "http://127.0.0.1:1").arrivals
            assert arrivals is not None
            schedules.append(arrivals.schedule_s(300))
        assert schedules[0] == schedules[1] == schedules[2]  # MoE and dense replay the same arrival times
        assert specs[0] is not None and specs[0].load_label() == f"request rate {rate:g}/s (Poisson, seed 5, at most" \
            " 16 in flight)"
    assert parse_sweep(yaml.safe_dump(sweep.model_dump(mode="json", exclude_none=True))) == sweep


@pytest.mark.parametrize("old, new, culprit", [
    ("  request_rate: [0.5, 4]\n", "  request_rate: [0.5, 4]\n  concurrency: 8\n",
     "serve.request_rate: give concurrency (requests kept in flight) or request_rate (requests/s arriving), not both"),
    ("  request_rate: [0.5, 4]", "  request_rate: 0", "serve.request_rate: must be greater than 0, got 0"),
    ("  request_rate: [0.5, 4]", "  request_rate: [2, -1]", "serve.request_rate[1]: must be greater than 0"),
    ("  request_rate: [0.5, 4]", "  request_rate: .inf", "serve.request_rate: must be a finite number"),
    ("  request_rate: [0.5, 4]", "  request_rate: .nan", "serve.request_rate: must be a finite number"),
    ("  request_rate: [0.5, 4]", "  request_rate: [2, 2.0]", "serve.request_rate: duplicate values"),
    ("  request_rate: [0.5, 4]", "  request_rate: fast", "serve.request_rate: expected a number"),
    ("  max_in_flight: 16", "  max_in_flight: 0", "serve.max_in_flight: must be greater than 0"),
    ("  max_in_flight: 16", "  max_in_flight: 16\n  burstiness: 0", "serve.burstiness: must be greater than 0"),
    ("  max_in_flight: 16", "  max_in_flight: 16\n  burstiness: .inf", "serve.burstiness: must be a finite number"),
    ("  request_rate: [0.5, 4]\n", "  concurrency: 4\n",
     "serve.max_in_flight: is a key of an open-loop load: it needs request_rate"),
])
def test_a_bad_open_loop_is_one_line_naming_the_culprit(old: str, new: str, culprit: str) -> None:
    assert old in OPEN
    assert culprit in error_of(OPEN.replace(old, new))
