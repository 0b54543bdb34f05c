"""One rank's place in a gang, and the gang's process group from set-up to teardown.

`GangContext` is what a rank is told (rank, world size, rendezvous, backend, device); the
`process_group(ctx)` context manager joins the group and destroys it on every exit path, normal
or not, and yields a `Gang`: the handful of collectives the gang agrees with (barrier, integers
from rank 0, objects from every rank) and a failure side channel.

Why a bounded timeout: a rank that dies or hangs must make its peers fail, not wait for ever.
Rendezvous (the TCP store) and every collective give up after `timeout_s`. On gloo a collective
with a dead or departed peer raises (at once when the peer's connections close, else at the
timeout). On NCCL the watchdog ends a collective that outlives the timeout and, with torch's
default `TORCH_NCCL_ASYNC_ERROR_HANDLING`, takes the process down with it: the rank fails loudly
and its caller (a Ray actor) sees it die.

Why a side channel: when one rank fails between collectives, its peers only see their next
collective break ("connection reset by peer"), which does not say what went wrong. So a failing
rank first writes its error to the gang's TCP store (`post_failure`), then leaves, which destroys
its process group and breaks its peers' collectives. Every rank that then fails writes its own
error after it; the first one posted (`first_failure`) is the root cause. The store is the one
the process group was built on (its server lives in rank 0's process).

Device: on CUDA, `cuda:LOCAL_RANK` where every GPU of the node is visible (torchrun), or the
only visible GPU where the launcher shows each rank one GPU (Ray sets CUDA_VISIBLE_DEVICES);
on the CPU, `cpu`. The backend follows: NCCL between CUDA devices, gloo on the CPU.
"""
from __future__ import annotations

import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

BACKENDS = ("nccl", "gloo")
DEFAULT_TIMEOUT_S = 300.0  # above any skew between ranks' local work (idle settling, peaks, model builds)
FAILURE_COUNT_KEY = "moecluster/gang/failures"
FAILURE_KEY = "moecluster/gang/failure/{}"

T = TypeVar("T")


@dataclass(frozen=True)
class GangContext:
    """Who this rank is and where the gang meets.

    `backend`: `nccl` or `gloo` (None: NCCL on a CUDA device, else gloo); `device`: `cuda`,
    `cuda:N` or `cpu` (None: CUDA for NCCL, or where torch sees a GPU and no backend is given;
    else the CPU); `local_rank`: this rank's index among the gang's ranks on its node;
    `timeout_s`: the longest any rendezvous or collective waits for a peer.
    """

    rank: int
    world_size: int
    master_addr: str
    master_port: int
    backend: str | None = None
    device: str | None = None
    local_rank: int = 0
    timeout_s: float = DEFAULT_TIMEOUT_S

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is not in a gang of {self.world_size}")
        if not 0 < self.master_port < 65536:
            raise ValueError(f"master_port {self.master_port} is not a TCP port")
        if self.backend is not None and self.backend not in BACKENDS:
            raise ValueError(f"backend {self.backend!r} unknown ({', '.join(BACKENDS)})")
        if self.local_rank < 0 or self.timeout_s <= 0:
            raise ValueError(f"local_rank must be >= 0 and timeout_s > 0 (got {self.local_rank}, {self.timeout_s})")

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, backend: str | None = None, device: str | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> "GangContext":
        """The context torchrun's variables describe (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT)."""
        missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in env]
        if missing:
            raise ValueError(f"gang environment lacks {', '.join(missing)}")
        return cls(rank=int(env["RANK"]), world_size=int(env["WORLD_SIZE"]), master_addr=env["MASTER_ADDR"],
                   master_port=int(env["MASTER_PORT"]), backend=backend, device=device,
                   local_rank=int(env.get("LOCAL_RANK", "0")), timeout_s=timeout_s)

    def torch_device(self) -> torch.device:
        """The device this rank computes on (see the module's docstring for the CUDA index)."""
        name = self.device
        if name is None:
            wants_cuda = self.backend == "nccl" or (self.backend is None and torch.cuda.is_available())
            name = "cuda" if wants_cuda else "cpu"
        device = torch.device(name)
        if device.type != "cuda" or device.index is not None:
            return device
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"rank {self.rank} wants a CUDA device, but torch sees none (torch {torch.__version__})")
        if self.local_rank < count:
            return torch.device("cuda", self.local_rank)
        if count == 1:
            return torch.device("cuda", 0)
        raise ValueError(f"local rank {self.local_rank} has no GPU among the {count} visible ones")

    def resolved_backend(self, device: torch.device) -> str:
        """The backend for `device`: the one asked, checked against the device, else NCCL on CUDA, gloo on CPU."""
        if self.backend == "nccl" and device.type != "cuda":
            raise ValueError(f"backend nccl needs CUDA devices, not {device}")
        return self.backend or ("nccl" if device.type == "cuda" else "gloo")


@dataclass(frozen=True)
class Gang:
    """A joined gang: this rank, its device, and the collectives the gang agrees with.

    Every method but `post_failure` and `first_failure` is a collective: every rank must call it,
    in the same order.
    """

    rank: int
    world_size: int
    device: torch.device
    backend: str
    store: Any  # the torch.distributed Store the process group was built on

    def barrier(self) -> None:
        """Wait until every rank gets here (host-blocking on both backends)."""
        dist.barrier()

    def from_rank0(self, values: Sequence[int]) -> list[int]:
        """Rank 0's `values` on every rank (others pass a list of the same length, ignored)."""
        t = torch.tensor(list(values), dtype=torch.int64, device=self.device)
        dist.broadcast(t, src=0)
        return [int(v) for v in t.tolist()]

    def all_gather(self, obj: T) -> list[T]:
        """Every rank's `obj` (picklable), in rank order, on every rank."""
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def post_failure(self, message: str) -> None:
        """Tell the gang why this rank is giving up (before leaving the process group)."""
        n = int(self.store.add(FAILURE_COUNT_KEY, 1))
        self.store.set(FAILURE_KEY.format(n), message)

    def first_failure(self) -> str | None:
        """The first failure any rank posted (the root cause), None if none was."""
        n = int(self.store.add(FAILURE_COUNT_KEY, 0))
        if n == 0:
            return None
        return bytes(self.store.get(FAILURE_KEY.format(1))).decode("utf-8", "replace")


@contextmanager
def process_group(ctx: GangContext) -> Iterator[Gang]:
    """Join the gang `ctx` describes; destroy the process group however the block ends.

    Refuses to run where a default process group already exists (a leftover of another gang in
    this process would mix collectives of two gangs). Rendezvous and collectives time out after
    `ctx.timeout_s`.
    """
    if dist.is_initialized():
        raise RuntimeError("a torch.distributed process group already exists in this process")
    device = ctx.torch_device()
    backend = ctx.resolved_backend(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    timeout = timedelta(seconds=ctx.timeout_s)
    store = dist.TCPStore(ctx.master_addr, ctx.master_port, ctx.world_size, is_master=ctx.rank == 0,
                          timeout=timeout)
    try:
        dist.init_process_group(backend, store=store, rank=ctx.rank, world_size=ctx.world_size, timeout=timeout,
                                device_id=device if device.type == "cuda" else None)
        yield Gang(rank=ctx.rank, world_size=ctx.world_size, device=device, backend=backend, store=store)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def free_port() -> int:
    """A TCP port free on this node now (the OS's choice), for a gang's rendezvous.

    Another process may take it before the gang binds it; the rendezvous then fails and the
    gang is retried.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])
