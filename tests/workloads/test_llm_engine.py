"""moecluster's fast path computes transformers' function of the same weights: the static-cache engine and
the expert kernels against transformers' own `generate`, on CPU in float32, for every family."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")

from moecluster.workloads.llm.build import build_model  # noqa: E402
from moecluster.workloads.llm.engine import StaticEngine  # noqa: E402
from moecluster.workloads.llm.experts import GATHER, GROUPED_MM, layout_problem, use_experts  # noqa: E402
from moecluster.spec.llm.presets import PRESETS  # noqa: E402
from moecluster.workloads.llm.reference import ReferenceDecode, dynamic_cache  # noqa: E402
from moecluster.spec.llm.twins import match_dense  # noqa: E402

CPU = torch.device("cpu")
B, P, G = 2, 6, 4
SHAPES = {
    **{name: PRESETS[name].shape for name in ("tiny-mixtral", "tiny-qwen2-moe", "tiny-qwen3-moe", "tiny-llama")},
    "tiny-mixtral twin": match_dense(PRESETS["tiny-mixtral"].shape, "total"),
    "tiny-qwen2-moe twin": match_dense(PRESETS["tiny-qwen2-moe"].shape, "active"),
    "tiny-qwen3-moe twin": match_dense(PRESETS["tiny-qwen3-moe"].shape, "active"),
}


def _prompt(vocab: int) -> torch.Tensor:
    prompt = torch.randint(0, vocab, (B, P), generator=torch.Generator().manual_seed(3))
    prompt[1, 2] = 0  # the pad id: still a token to attend to
    return prompt


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_built_model_holds_exactly_the_counted_parameters(name: str) -> None:
    shape = SHAPES[name]
    model = build_model(shape, CPU, torch.float32, 0, 64)
    assert sum(p.numel() for p in model.parameters()) == shape.params().total
    assert type(model).__name__.lower().startswith(shape.architecture.replace("_", ""))


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_engine_and_kernels_compute_what_transformers_generate_computes(name: str) -> None:
    shape = SHAPES[name]
    model = build_model(shape, CPU, torch.float32, 1, 64)
    prompt = _prompt(shape.vocab_size)
    with torch.inference_mode():
        ref = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=G, do_sample=False,
                             eos_token_id=None, pad_token_id=0, output_logits=True, return_dict_in_generate=True)
        for kernel in ([None, GROUPED_MM, GATHER] if shape.is_moe else [None]):
            use_experts(model, kernel)
            engine = StaticEngine(model, B, P - 1 + G, G, CPU, torch.float32)
            torch.testing.assert_close(engine.prefill(prompt), ref.logits[0], rtol=1e-4, atol=1e-5)
            engine.start_from(prompt)
            steps = [engine.decode_step().clone() for _ in range(G)]
            for mine, theirs in zip(steps, ref.logits):
                torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-5)
            assert torch.equal(engine.tokens, ref.sequences[:, P:])
            engine.reset()  # a second response from the same cache is the same response
            for _ in range(G):
                engine.decode_step()
            assert torch.equal(engine.tokens, ref.sequences[:, P:])


def test_reference_decode_continues_from_a_cache_the_engine_filled() -> None:
    shape = SHAPES["tiny-qwen2-moe"]
    model = build_model(shape, CPU, torch.float32, 2, 64)
    prompt = _prompt(shape.vocab_size)
    with torch.inference_mode():
        full = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=G, do_sample=False,
                              eos_token_id=None, pad_token_id=0)
        engine = StaticEngine(model, B, P - 1 + G, G, CPU, torch.float32)
        engine.start_from(prompt)
        cache = dynamic_cache(model, [k[:, :, :P - 1] for k in engine.keys], [v[:, :, :P - 1] for v in engine.values])
        ref = ReferenceDecode(model, prompt, G, cache)
        first = ref.outputs()
        assert torch.equal(first.tokens, full[:, P:])
        assert cache.get_seq_length() == P - 1  # cropped back after the response
        assert torch.equal(ref.step()[:, P:], full[:, P:])  # and again


def test_experts_switch_restores_the_library_and_refuses_other_layouts() -> None:
    model = build_model(SHAPES["tiny-mixtral"], CPU, torch.float32, 0, 64)
    experts = model.model.layers[0].mlp.experts
    library = type(experts).forward
    use_experts(model, GROUPED_MM)
    assert experts.forward.func.__name__ == "grouped_mm_experts"
    use_experts(model, None)
    assert experts.forward.__func__ is library
    with pytest.raises(ValueError, match="unknown expert kernel"):
        use_experts(model, "triton")
    assert "no stacked gate_up_proj" in (layout_problem(torch.nn.Linear(2, 2)) or "")
