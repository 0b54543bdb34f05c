"""The MLP workload prepares every model in its measured fastest form and records it."""
import pytest
import torch

from moecluster.spec.records import TaskSpec
from moecluster.workloads.forms import CACHED, FormCache
from moecluster.workloads.mlp.dense import DenseMLP, dense_layouts
from moecluster.workloads.mlp.experts import GROUPED_KERNELS
from moecluster.spec.mlp.shapes import DenseShape, MoEShape
from moecluster.workloads.mlp.workload import MlpWorkload

MOE = MoEShape(num_experts=4, expert_hidden_dim=16, expert_num_layers=2, top_k=2, input_dim=24)
DENSE = DenseShape(hidden_dim=32, num_layers=2, input_dim=24)
CPU = torch.device("cpu")
FORM_KEYS = {"layout", "kernel", "graph", "candidates", "choice"}


def spec(impl: str, **fields) -> TaskSpec:
    kind = "dense" if impl == "dense" else "moe"
    model = (DENSE if kind == "dense" else MOE).as_model()
    return TaskSpec(task_id="t", pair_id="p", kind=kind, impl=impl, model=model,
                    **{"device": "cpu", "batch_size": 16, **fields})


def test_the_dense_twin_runs_its_fastest_layout_and_records_every_candidate() -> None:
    prepared = MlpWorkload(forms=FormCache()).prepare(spec("dense"), CPU, torch.float32)
    form = prepared.form
    assert FORM_KEYS <= set(form) and form["layout"] in dense_layouts()
    assert form["graph"] == "eager: device cpu has no CUDA graphs"
    assert all(f"{layout} eager " in form["candidates"] for layout in dense_layouts())
    assert isinstance(prepared.model, DenseMLP) and prepared.model.layout == form["layout"]
    with torch.inference_mode():
        out = prepared.step()
        prepared.model.layout = "F.linear [out,in]"
        assert torch.allclose(out, prepared.model(prepared.inputs), rtol=1e-4, atol=1e-6)


def test_grouped_runs_its_fastest_kernel_and_records_it() -> None:
    prepared = MlpWorkload(forms=FormCache()).prepare(spec("grouped"), CPU, torch.float32)
    assert FORM_KEYS <= set(prepared.form)
    assert prepared.form["kernel"] in GROUPED_KERNELS and prepared.model.kernel == prepared.form["kernel"]
    assert prepared.form["graph"] == "eager: device cpu has no CUDA graphs"


@pytest.mark.parametrize("impl", ["naive", "sorted"])
def test_the_seeds_implementations_run_as_references(impl: str) -> None:
    prepared = MlpWorkload(forms=FormCache()).prepare(spec(impl), CPU, torch.float32)
    assert prepared.form["layout"] == prepared.form["kernel"] == "reference: the seed's code"
    assert prepared.form["candidates"] == f"only one: {impl} eager"


def test_the_repeats_of_a_task_reuse_the_choice_of_the_first_prepare() -> None:
    workload = MlpWorkload(forms=FormCache())
    first = workload.prepare(spec("dense"), CPU, torch.float32)
    again = workload.prepare(spec("dense"), CPU, torch.float32)
    assert again.form["choice"] == CACHED and again.form["layout"] == first.form["layout"]
    assert again.form["candidates"] == first.form["candidates"]
    other_batch = workload.prepare(spec("dense", batch_size=8), CPU, torch.float32)
    assert other_batch.form["choice"] != CACHED


@pytest.mark.parametrize("impl, why", [("naive", "naive syncs with the host"),
                                       ("sorted", "sorted syncs with the host")])
def test_a_required_graph_is_refused_for_the_seeds_host_syncing_code(impl: str, why: str) -> None:
    with pytest.raises(ValueError, match=f"cuda_graphs: true is impossible for impl {impl}: {why}"):
        MlpWorkload().validate(spec(impl, cuda_graphs=True, device="cuda"))


def test_a_required_graph_on_the_cpu_is_refused() -> None:
    with pytest.raises(ValueError, match="cuda_graphs: true needs device cuda"):
        MlpWorkload().validate(spec("grouped", cuda_graphs=True))


def test_eager_asked_is_recorded_as_the_reason() -> None:
    prepared = MlpWorkload(forms=FormCache()).prepare(spec("sorted", cuda_graphs=False), CPU, torch.float32)
    assert prepared.form["graph"] == "eager: cuda_graphs false: eager, the seed's way"
