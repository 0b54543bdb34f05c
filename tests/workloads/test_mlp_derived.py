"""Copies derived from weights are rebuilt whenever the weights change, and only then."""
import torch

from moecluster.workloads.mlp.derived import DerivedTensors, source_key


def test_a_copy_is_reused_while_its_sources_are_unchanged() -> None:
    w = torch.randn(3, 4)
    derived = DerivedTensors()
    builds = []

    def build():
        builds.append(1)
        return (w.t().contiguous(),)

    first = derived.get([w], build)
    assert derived.get([w], build)[0] is first[0] and len(builds) == 1
    assert derived.tensors == first


def test_an_in_place_write_a_new_storage_or_a_new_dtype_rebuilds_it() -> None:
    w = torch.nn.Parameter(torch.randn(3, 4), requires_grad=False)
    derived = DerivedTensors()

    def build():
        return (w.detach().t().contiguous(),)

    derived.get([w], build)
    with torch.no_grad():
        w.copy_(torch.ones(3, 4))  # what load_state_dict does
    assert torch.equal(derived.get([w], build)[0], torch.ones(4, 3))
    w.data = torch.zeros(3, 4)
    assert torch.equal(derived.get([w], build)[0], torch.zeros(4, 3))
    w.data = w.data.double()
    assert derived.get([w], build)[0].dtype == torch.float64


def test_the_key_of_an_inference_tensor_has_no_version() -> None:
    with torch.inference_mode():
        t = torch.zeros(2)
    assert source_key([t]).entries[0][1] == -1


def test_clear_drops_the_copy() -> None:
    derived = DerivedTensors()
    derived.get([torch.zeros(2)], lambda: (torch.ones(2),))
    derived.clear()
    assert derived.tensors == ()
