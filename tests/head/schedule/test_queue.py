"""The head's queue: only what the alive nodes can run goes to Ray; a lost pair starts next."""
from __future__ import annotations

from moecluster.head.schedule.cluster import Inventory, NodeInfo
from moecluster.head.schedule.queue import PairQueue, Waiting
from moecluster.head.schedule.resources import PairResources, parallel_slots
from moecluster.head.sweep import expand, parse_sweep

PAIRS = expand(parse_sweep("name: q\nmodels: [{preset: small}]\nseed: [0, 1, 2, 3, 4, 5]\ndevice: cpu\n"
                           "meter: fake\n"), run_id="q").pairs
ONE_GPU = PairResources(ranks=1, gpus=1, cpus=0.5, accelerator_type=None, strategy="STRICT_PACK")
GANG = PairResources(ranks=2, gpus=1, cpus=0.5, accelerator_type=None, strategy="STRICT_PACK")
FAKE_B = PairResources(ranks=1, gpus=1, cpus=0.5, accelerator_type="FAKE-B", strategy="STRICT_PACK")


def node(name: str, gpus: int = 2, accel: str = "FAKE-A") -> NodeInfo:
    return NodeInfo(node_id=name, name=name, address="10.0.0.1", cpus=1, gpus=gpus, accelerator_type=accel)


def waiting(i: int, res: PairResources = ONE_GPU, attempts: int = 0) -> Waiting:
    return Waiting(PAIRS[i], res, attempts=attempts)


def ids(taken: list[Waiting]) -> list[str]:
    return [w.pair.pair_id for w in taken]


def test_only_as_many_pairs_as_the_nodes_hold_go_to_ray() -> None:
    inv = Inventory((node("a"), node("b")))
    queue = PairQueue([waiting(i) for i in range(6)])
    slots = parallel_slots(inv, True, 0.5)
    first = queue.admit([], inv, slots)
    assert ids(first) == [p.pair_id for p in PAIRS[:4]] and len(queue) == 2
    assert queue.admit([ONE_GPU] * 4, inv, slots) == []  # every GPU busy: the rest wait here, not in Ray


def test_a_lost_pair_goes_first_when_a_slot_frees() -> None:
    inv = Inventory((node("a"), node("b")))
    queue = PairQueue([waiting(i) for i in range(4, 6)])
    queue.push_front(waiting(0, attempts=1))
    taken = queue.admit([ONE_GPU] * 3, inv, parallel_slots(inv, True, 0.5))
    assert ids(taken) == [PAIRS[0].pair_id] and taken[0].attempts == 1


def test_a_full_kind_does_not_hold_up_other_kinds_but_a_full_cluster_holds_up_everything() -> None:
    inv = Inventory((node("a"), node("b", accel="FAKE-B")))
    queue = PairQueue([waiting(0, FAKE_B), waiting(1, ONE_GPU)])
    assert ids(queue.admit([FAKE_B, FAKE_B], inv, 4)) == [PAIRS[1].pair_id]  # FAKE-B full; the other goes
    queue = PairQueue([waiting(0, GANG), waiting(1, ONE_GPU)])
    assert queue.admit([ONE_GPU] * 3, inv, 4) == []  # the gang needs 2 of 4 slots: nothing overtakes it


def test_with_nothing_running_the_first_pair_a_node_can_hold_starts() -> None:
    inv = Inventory((node("a"),))
    queue = PairQueue([waiting(0, GANG)])
    assert ids(queue.admit([], inv, 1)) == [PAIRS[0].pair_id]


def test_a_pair_no_node_can_hold_is_given_up_only_after_the_grace_period() -> None:
    inv = Inventory((node("a"),))  # no FAKE-B node left
    queue = PairQueue([waiting(0, FAKE_B), waiting(1)])
    assert queue.unplaceable(inv, now=100.0, grace_s=5.0) == []
    assert queue.unplaceable(inv, now=104.0, grace_s=5.0) == []
    gone = queue.unplaceable(inv, now=105.0, grace_s=5.0)
    assert ids(gone) == [PAIRS[0].pair_id] and len(queue) == 1
