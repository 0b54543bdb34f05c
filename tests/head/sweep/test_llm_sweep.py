"""Sweeps with `workload: llm`: one schema with the MLP's, validated at load in the same error style, expanded
into pairs of an MoE and its total- and active-matched twins per phase."""
from __future__ import annotations

from pathlib import Path

import pytest

from moecluster.spec.llm.presets import PRESETS
from moecluster.head.sweep import SweepError, expand, parse_sweep
from moecluster.head.sweep.size import task_count

LLM = """\
name: llm
workload: llm
models: [{preset: tiny-mixtral}, {name: small-qwen, architecture: qwen3_moe, vocab_size: 512, hidden_size: 64,
          num_layers: 2, num_heads: 4, num_kv_heads: 2, head_dim: 16, intermediate_size: 32, num_experts: 6,
          top_k: 2}]
impl: [library, grouped]
match: [total, active]
phase: [prefill, decode]
batch_size: [1, 8]
prompt_len: 16
gen_tokens: [4, 8]
dtype: bfloat16
device: cpu
replicates: 1
"""


def test_llm_sweep_expands_into_phase_pairs_with_both_twins() -> None:
    sweep = parse_sweep(LLM, Path("llm.yaml"))
    plan = expand(sweep, run_id="r")
    # per model × impl × batch: one prefill pair and one decode pair per gen_tokens
    assert len(plan.pairs) == 2 * 2 * 2 * (1 + 2)
    assert task_count(sweep)[0] >= len(plan.tasks)
    first = plan.pairs[0]
    assert first.pair_id == "tiny-mixtral-library-bf16-b1-prefill-p16"
    kinds = {(t.kind, t.match, t.architecture) for t in first.tasks}
    assert kinds == {("dense", "total", "mistral"), ("dense", "active", "mistral"), ("moe", None, "mixtral")}
    moe = PRESETS["tiny-mixtral"].shape.params()
    assert first.params_total == (moe.total, moe.active_per_token, moe.total)
    decode = [p for p in plan.pairs if "decode" in p.pair_id and p.model == "small-qwen"]
    assert {t.gen_tokens for p in decode for t in p.tasks} == {4, 8}
    assert all(t.workload == "llm" and t.path == "fast" and t.prompt_len == 16 for t in plan.tasks)
    assert all(t.gen_tokens == 0 for p in plan.pairs if "prefill" in p.pair_id for t in p.tasks)
    assert {t.architecture for p in decode for t in p.tasks} == {"qwen3_moe", "qwen3"}
    assert plan.pairs[0].tasks[0].preset == "tiny-mixtral" and decode[0].tasks[0].preset is None


def test_shared_twins_and_the_reference_path() -> None:
    text = LLM.replace("impl: [library, grouped]", "impl: [library, grouped]\nshare_twins: true\n"
                       "path: [fast, reference]\ncuda_graphs: true").replace("device: cpu", "device: cuda")
    sweep = parse_sweep(text, Path("llm.yaml"))
    plan = expand(sweep)
    assert all(p.pair_id.endswith("-fast") and p.tasks[0].cuda_graphs for p in plan.pairs)
    assert any("reference" in s and "impossible on path reference" in s for s in plan.skipped)
    assert [t.impl for t in plan.pairs[0].tasks] == ["dense", "dense", "library", "grouped"]


BAD = {
    "unknown preset": ("models: [{preset: mixtral-8x7bb}]", "llm.yaml:3: models[0].preset: unknown llm preset"
                       " 'mixtral-8x7bb' (did you mean 'mixtral-8x7b'"),
    "dense preset": ("models: [{preset: llama-3.3-70b}]", "models[0].preset: llm preset 'llama-3.3-70b' is dense"),
    "unknown architecture": ("models: [{name: x, architecture: mixtrall}]", "models[0].architecture: unknown"
                             " architecture 'mixtrall' (did you mean 'mixtral'"),
    "mlp field": ("models: [{preset: tiny-mixtral, expert_hidden_dim: 8}]", "models[0].expert_hidden_dim: is a field"
                  " of workload mlp"),
    "mlp impl": ("models: [{preset: tiny-mixtral}]\nimpl: sorted", "impl: 'sorted' is an mlp implementation"),
    "zipf load": ("models: [{preset: tiny-mixtral}]\nload: zipf", "load: zipf is not implemented for workload llm"),
    "seed twin": ("models: [{preset: tiny-mixtral}]\nmatch: seed", "match: 'seed' is the MLP seed's own width"),
    "bad phase": ("models: [{preset: tiny-mixtral}]\nphase: decod", "phase: 'decod' is not one of prefill, decode"
                  " (did you mean 'decode'?)"),
    "zero prompt": ("models: [{preset: tiny-mixtral}]\nprompt_len: [16, 0]", "prompt_len[1]: must be greater than 0"),
    "bad shape": ("models: [{preset: tiny-mixtral, top_k: 9}]", "top_k (9) is larger than num_experts (6)"),
    "ep not dividing experts": ("models: [{preset: tiny-mixtral}]\nbatch_size: 8\nexpert_parallel: [1, 4]",
                                "expert_parallel: 4 does not divide num_experts (6) of models[0] (tiny-mixtral)"),
    "ep not dividing a grid's batch": ("models: [{preset: tiny-mixtral}]\nbatch_size: 4\nexpert_parallel: 2\n"
                                       "grids: [{batch_size: [4, 3]}]",
                                       "batch_size: 3 is not divisible by expert_parallel 2"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_llm_sweeps_are_one_line_naming_the_key(case: str) -> None:
    body, expected = BAD[case]
    with pytest.raises(SweepError) as info:
        parse_sweep(f"name: t\nworkload: llm\n{body}\ndevice: cpu\n", Path("llm.yaml"))
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_expert_parallel_splits_the_moe_over_a_gang_and_keeps_the_twins_on_one_gpu_each() -> None:
    text = LLM.replace("batch_size: [1, 8]", "batch_size: [2, 8]")
    text += "expert_parallel: [1, 2]\npath: [fast, reference]\n"
    plan = expand(parse_sweep(text, Path("llm.yaml")))
    gangs = [p for p in plan.pairs if p.gpus == 2]
    assert gangs and len(gangs) == len([p for p in plan.pairs if p.gpus == 1 and p.pair_id.endswith("-fast-ep1")])
    for pair in gangs:
        assert pair.pair_id.endswith("-fast-ep2") and pair.moe.expert_parallel == 2
        assert all(t.expert_parallel == 1 for t in pair.tasks if t.kind == "dense")
    assert any("ep2" in s and "needs path fast" in s for s in plan.skipped)


@pytest.mark.parametrize("key, value", [("phase", "decode"), ("prompt_len", "64"), ("gen_tokens", "8"),
                                        ("path", "reference")])
def test_an_mlp_sweep_refuses_the_llm_keys(key: str, value: str) -> None:
    with pytest.raises(SweepError, match=f"{key}: is a key of workload llm"):
        parse_sweep(f"name: t\nreplicates: 1\nmodels: [{{preset: small}}]\n{key}: {value}\n", Path("t.yaml"))
    with pytest.raises(SweepError, match="'library' is an llm implementation"):
        parse_sweep("name: t\nreplicates: 1\nmodels: [{preset: small}]\nimpl: library\n", Path("t.yaml"))


def test_an_mlp_sweep_expands_as_before_and_its_resolved_dump_reloads() -> None:
    import yaml

    sweep = parse_sweep("name: t\nreplicates: 1\nmodels: [{preset: small}]\nimpl: [naive, grouped]\n", Path("t.yaml"))
    plan = expand(sweep)
    assert [p.pair_id for p in plan.pairs] == ["small-naive-fp32-b128", "small-grouped-fp32-b128"]
    assert all(t.workload == "mlp" and t.phase is None for t in plan.tasks)
    llm = parse_sweep(LLM, Path("llm.yaml"))
    for s in (sweep, llm):  # a run directory keeps the resolved sweep, every key written out
        assert parse_sweep(yaml.safe_dump(s.model_dump(mode="json", exclude_none=True))) == s


def test_a_huge_llm_is_refused_at_load_with_the_memory_it_needs() -> None:
    body = "models: [{preset: mixtral-8x22b, num_layers: 100000}]"
    with pytest.raises(SweepError, match=r"need [\d,]+ GiB for the weights alone"):
        expand(parse_sweep(f"name: t\nreplicates: 1\nworkload: llm\n{body}\n", Path("t.yaml")))


def test_grids_measure_decode_over_batch_and_prefill_over_prompt_in_one_sweep(examples: Path) -> None:
    sweep = parse_sweep((examples.parent / "benchmarks" / "sweeps" / "llm-h100.yaml").read_text(), Path("h.yaml"))
    plan = expand(sweep)
    first = [p for p in plan.pairs if p.replicate == 1]
    decode = [p.tasks[0] for p in first if p.tasks[0].phase == "decode"]
    prefill = [p.tasks[0] for p in first if p.tasks[0].phase == "prefill"]
    assert [(t.batch_size, t.prompt_len, t.gen_tokens) for t in decode] == [(b, 256, 64) for b in (1, 4, 16, 64, 256)]
    assert [(t.batch_size, t.prompt_len, t.gen_tokens) for t in prefill] == [(1, p, 0) for p in (512, 2048, 8192)]
    assert len(plan.tasks) == 24 * sweep.replicates and task_count(sweep)[0] >= len(plan.tasks)
    assert {t.dtype for t in plan.tasks} == {"bfloat16"} and all(len(p.tasks) == 3 for p in plan.pairs)
    with pytest.raises(SweepError, match=r"grids\[0\]\.impl: 'naive' is an mlp implementation"):
        parse_sweep("name: t\nreplicates: 1\nworkload: llm\nmodels: [{preset: tiny-mixtral}]\ngrids: [{impl: naive}]\n")
    with pytest.raises(SweepError, match="grids: is a key of workload llm"):
        parse_sweep("name: t\nreplicates: 1\nmodels: [{preset: small}]\ngrids: [{phase: decode}]\n")
