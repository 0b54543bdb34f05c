"""Routing pinned for a check: a fast form's first step replays the reference's router choices, so a
near tie that rounding flips cannot fail a correct kernel, and the flips are counted."""
from __future__ import annotations

from typing import Any

import pytest
import torch

pytest.importorskip("transformers")

from moecluster.workloads.llm.build import build_model  # noqa: E402
from moecluster.spec.llm.presets import PRESETS  # noqa: E402
from moecluster.workloads.llm.routing import count_routing, pin_routing, record_routing  # noqa: E402

CPU = torch.device("cpu")


def _model_and_prompt() -> tuple[Any, torch.Tensor]:
    shape = PRESETS["tiny-mixtral"].shape
    model = build_model(shape, CPU, torch.float32, 4, 32)
    prompt = torch.randint(0, shape.vocab_size, (2, 8), generator=torch.Generator().manual_seed(5))
    return model, prompt


def _perturb_routers(model: Any) -> None:
    """New router weights: most top-k choices now differ from the original model's."""
    gen = torch.Generator().manual_seed(9)
    for layer in model.model.layers:
        w = layer.mlp.gate.weight
        w.copy_(torch.randn(w.shape, generator=gen))


def test_pinned_first_forward_computes_the_recorded_routing_and_counts_the_flips() -> None:
    model, prompt = _model_and_prompt()
    layers = len(model.model.layers)
    with torch.inference_mode():
        with record_routing(model) as recorded:
            reference = model(prompt).logits
            model(prompt)  # a second forward is not recorded
        assert len(recorded) == layers
        _perturb_routers(model)
        with pin_routing(model, recorded, replace=False) as counted:
            free = model(prompt).logits
        with pin_routing(model, recorded) as report:
            pinned = model(prompt).logits
            after = model(prompt).logits  # past the pinned calls the routers choose freely
    assert not torch.allclose(free, reference, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(pinned, reference, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(after, free, rtol=1e-5, atol=1e-6)
    top_k = model.config.num_experts_per_tok
    assert report.calls == counted.calls == layers
    assert report.choices == counted.choices == layers * prompt.numel() * top_k
    assert 0 < counted.flipped <= counted.choices  # the free run's flips, counted without changing its output
    assert f"{counted.flipped} of {counted.choices} top-k choices" in counted.describe()
    assert report.describe() == f"router choices pinned to the reference's in the first step ({layers} router calls)"


def test_a_call_of_another_shape_is_not_pinned() -> None:
    model, prompt = _model_and_prompt()
    with torch.inference_mode():
        with record_routing(model) as recorded:
            model(prompt)
        shorter = prompt[:, :5]
        expected = model(shorter).logits
        experts = PRESETS["tiny-mixtral"].shape.num_experts
        with pin_routing(model, recorded) as report, count_routing(model, experts) as counted:
            got = model(shorter).logits
    torch.testing.assert_close(got, expected)
    assert report.calls == 0 and report.describe() == ""
    assert counted.forwards == len(recorded)
