"""Tile configurations of the fused MoE path, chosen by measurement per load and cached per process.

A fused forward launches one kernel per layer; each layer role (`first`: reads the inputs
through the permutation; `hidden`: h -> h, all alike; `last`: h -> out, gated scatter) gets its
own tile (BLOCK_N, BLOCK_K, GROUP_M, warps, stages). BLOCK_M is shared by every layer since
the permutation pads each expert's copies to a multiple of it. Which tiles win depends on the
load: at a few tokens per expert a layer streams weights from HBM (narrow BLOCK_M, deep K
pipelines), at thousands it is a tensor-core GEMM (128-row tiles, grouped launch order).

The search is small on purpose (two BLOCK_M, a few candidates per role, chosen by the regime
the load puts the layer in, filtered by shared memory), greedy per role, and runs at prepare time only
(`search`); candidates within 1 % of the fastest count as a tie, won by the first in candidate order
(`first_within_floor`), so replicates keep one tile; a forward never measures: it takes the tiles
tuned for its load, else those tuned for the nearest load of the same model, else the regime's
first candidates (`TileCache.lookup`).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

T = TypeVar("T")

ROLES = ("first", "hidden", "last")
SHARED_MEMORY_BYTES = 200 * 1024  # candidates whose pipeline needs more are not tried (H100: 227 KiB per block)


@dataclass(frozen=True)
class Tile:
    """One layer's launch configuration besides BLOCK_M."""

    block_n: int
    block_k: int
    group_m: int
    num_warps: int
    num_stages: int
    tma: bool = False  # weights (and contiguous activations, outputs) copied by the tensor memory accelerator

    def label(self) -> str:
        tma = " tma" if self.tma else ""
        return f"N{self.block_n} K{self.block_k} G{self.group_m} w{self.num_warps} s{self.num_stages}{tma}"

    def shared_bytes(self, block_m: int, element_bytes: int) -> int:
        """Shared memory of its software pipeline: A and W tiles of every stage."""
        return (block_m + self.block_n) * self.block_k * element_bytes * self.num_stages


@dataclass(frozen=True)
class FusedTiles:
    """BLOCK_M and one tile per role; `how` says whether they were measured (for the record)."""

    block_m: int
    first: Tile
    hidden: Tile
    last: Tile
    how: str

    def for_layer(self, index: int, num_layers: int) -> Tile:
        if index == num_layers - 1:
            return self.last
        return self.first if index == 0 else self.hidden

    def label(self) -> str:
        return (f"BLOCK_M {self.block_m}; first {self.first.label()}; hidden {self.hidden.label()};"
                f" last {self.last.label()} ({self.how})")


@dataclass(frozen=True)
class Family:
    """What tiles are tuned for besides the load: device, dtype, fp32 input precision, layer widths."""

    device: str
    dtype: str
    precision: str
    layer_dims: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Load:
    """The load tiles are tuned for: token copies and experts (their ratio sets the regime)."""

    num_copies: int
    num_experts: int

    @property
    def rows_per_expert(self) -> float:
        return self.num_copies / max(1, self.num_experts)


def max_blocks(num_copies: int, num_experts: int, block_m: int) -> int:
    """The most blocks of `block_m` rows any routing of `num_copies` copies over `num_experts` can fill
    (each expert's copies padded to a multiple of `block_m`)."""
    return min(-(-num_copies // block_m) + num_experts, num_copies)


def _pow2_at_least(n: int, floor: int = 16) -> int:
    return max(floor, 1 << max(0, n - 1).bit_length())


def block_m_candidates(rows_per_expert: float, element_bytes: int) -> tuple[int, ...]:
    """BLOCK_M worth trying: about the tokens an expert gets, never far beyond (padding rows cost
    compute, which is what fp32 is short of), 128 once a layer is a real GEMM."""
    if element_bytes >= 4:  # fp32: products on CUDA cores (ieee) unless TF32 was asked for
        if rows_per_expert <= 24:
            return (16, 32)
        if rows_per_expert <= 48:
            return (32, 16)
        return (64, 128) if rows_per_expert >= 256 else (64, 32)
    if rows_per_expert <= 24:
        return (16, 32)
    if rows_per_expert <= 48:
        return (32, 64)
    if rows_per_expert <= 96:
        return (64, 32)
    return (128, 64) if rows_per_expert >= 384 else (64, 128)


def _streaming(element_bytes: int) -> list[Tile]:
    """Few rows per block: the layer streams its weights; deep K pipelines keep HBM busy. In fp32
    (products on CUDA cores) wider N tiles give each thread more products per shared-memory read."""
    if element_bytes >= 4:  # BLOCK_M 16 splits an expert's rows more often: GROUP_M 4 runs its blocks side by side
        return [Tile(128, 32, 4, 4, 4), Tile(64, 64, 4, 4, 4), Tile(128, 64, 4, 8, 3), Tile(256, 32, 4, 8, 3)]
    return [Tile(64, 128, 1, 4, 4), Tile(128, 128, 1, 4, 3), Tile(64, 256, 1, 4, 3), Tile(32, 256, 1, 4, 4)]


def _compute(element_bytes: int) -> list[Tile]:
    """Many rows per block: GEMM tiles (the usual Hopper choices), grouped launch order for L2 reuse;
    fp32 takes half the K depth (twice the bytes per stage)."""
    if element_bytes >= 4:
        return [Tile(128, 32, 8, 8, 3), Tile(128, 32, 8, 4, 4), Tile(64, 32, 8, 4, 4), Tile(256, 32, 8, 8, 3)]
    return [Tile(128, 64, 8, 4, 4), Tile(256, 64, 8, 8, 3), Tile(128, 64, 8, 8, 4), Tile(128, 128, 8, 8, 3)]


def candidates(role: str, block_m: int, n_out: int, k_in: int, element_bytes: int,
               rows_per_expert: float, tma: bool = False) -> list[Tile]:
    """The tiles tried for one layer role at one BLOCK_M, likeliest first (the first is the default):
    streaming tiles while an expert's rows fill fewer than two blocks, GEMM tiles beyond; with
    `tma` (Hopper on, 16-bit dtypes) the first (hidden: first two) again with TMA copies."""
    if role == "last" or n_out <= 32:  # h -> out: a few output columns, a long K: stream K
        width = _pow2_at_least(n_out)
        tiles = [Tile(width, 128, 1, 4, 4), Tile(width, 256, 1, 4, 3), Tile(width, 64, 1, 4, 4)]
    else:
        tiles = _compute(element_bytes) if rows_per_expert >= 2 * block_m else _streaming(element_bytes)
        tiles = [t for t in tiles if t.block_n <= _pow2_at_least(n_out)]
    if role == "first":
        tiles = tiles[:3]  # one layer of L: fewer tries
    if tma and element_bytes == 2:
        tiles += [replace(t, tma=True) for t in tiles[:2 if role == "hidden" else 1] if n_out % t.block_n == 0]
    fits = [t for t in dict.fromkeys(tiles) if t.shared_bytes(block_m, element_bytes) <= SHARED_MEMORY_BYTES]
    return fits or [Tile(_pow2_at_least(min(n_out, 64)), 32, 1, 4, 2)]


def default_tiles(load: Load, layer_dims: Sequence[tuple[int, int]], element_bytes: int, how: str) -> FusedTiles:
    """The regime's first candidates, unmeasured."""
    block_m = block_m_candidates(load.rows_per_expert, element_bytes)[0]
    roles = _role_dims(layer_dims)
    picks = {role: candidates(role, block_m, n, k, element_bytes, load.rows_per_expert)[0]
             for role, (k, n) in roles.items()}
    return FusedTiles(block_m=block_m, how=how, **picks)


def _role_dims(layer_dims: Sequence[tuple[int, int]]) -> dict[str, tuple[int, int]]:
    """(in, out) of one layer per role; a model without hidden layers reuses the last layer's dims."""
    dims = list(layer_dims)
    hidden = dims[1] if len(dims) > 2 else dims[-1]
    return {"first": dims[0], "hidden": hidden, "last": dims[-1]}


@dataclass(frozen=True)
class Trial:
    """One measured candidate: its seconds per launch, or why it could not run."""

    role: str
    block_m: int
    tile: Tile
    time_s: float | None = None
    failure: str | None = None

    def label(self) -> str:
        what = f"{self.role} BLOCK_M {self.block_m} {self.tile.label()}"
        return f"{what}: {self.failure}" if self.time_s is None else f"{what} {self.time_s * 1e3:.3f} ms"


TIE_FLOOR = 0.01  # tiles (or BLOCK_M) within 1 % of the fastest are a tie: the first in candidate order wins


def first_within_floor(timed: Sequence[tuple[float, T]]) -> tuple[float, T] | None:
    """Of (seconds, candidate) in candidate order, the first within `TIE_FLOOR` of the fastest (None: none ran).

    Why not the fastest: a tile search times each candidate once, and two tiles within a percent of each
    other swap places between processes; a fixed order keeps replicates on one tile (`workloads.race`
    does the same, with measured noise, for the forms themselves)."""
    if not timed:
        return None
    best = min(s for s, _ in timed)
    return next(item for item in timed if item[0] <= best * (1 + TIE_FLOOR))


TimeLayer = Callable[[str, int, Tile], float]  # (role, BLOCK_M, tile) -> seconds per launch; raises if it cannot run


def search(load: Load, layer_dims: Sequence[tuple[int, int]], element_bytes: int,
           time_layer: TimeLayer, tma: bool = False) -> tuple[FusedTiles, tuple[Trial, ...]]:
    """The fastest tiles for this load, measured greedily, role by role.

    BLOCK_M is chosen on the role that dominates (the hidden layers; the first layer where there
    are none): each BLOCK_M candidate times that role's tiles. At the winning BLOCK_M the other
    roles time theirs (a layer's time does not depend on the other layers' tiles). Raises
    RuntimeError naming every failure where some role has no runnable tile.
    """
    dims = _role_dims(layer_dims)
    hidden_layers = max(0, len(layer_dims) - 2)
    lead = "hidden" if hidden_layers else "first"
    trials: list[Trial] = []

    def fastest(role: str, block_m: int) -> tuple[float, Tile] | None:
        k_in, n_out = dims[role]
        timed: list[tuple[float, Tile]] = []
        for tile in candidates(role, block_m, n_out, k_in, element_bytes, load.rows_per_expert, tma):
            try:
                seconds = time_layer(role, block_m, tile)
            except Exception as exc:  # noqa: BLE001 - a candidate that cannot compile or launch is recorded, not fatal
                trials.append(Trial(role, block_m, tile, failure=_first_line(exc)))
                continue
            trials.append(Trial(role, block_m, tile, time_s=seconds))
            timed.append((seconds, tile))
        return first_within_floor(timed)

    leads = {m: fastest(lead, m) for m in block_m_candidates(load.rows_per_expert, element_bytes)}
    ran = {m: best for m, best in leads.items() if best is not None}
    if not ran:
        raise RuntimeError(f"no tile of the fused kernel's {lead} layer could run: "
                           + "; ".join(t.label() for t in trials if t.failure))
    picked = first_within_floor([(best[0], m) for m, best in ran.items()])
    assert picked is not None  # `ran` is not empty
    block_m = picked[1]
    picks = {lead: ran[block_m]}
    for role in ROLES:
        if role in picks or (role == "hidden" and not hidden_layers):
            continue
        best = fastest(role, block_m)
        if best is None:
            raise RuntimeError(f"no tile of the fused kernel's {role} layer could run at BLOCK_M {block_m}: "
                               + "; ".join(t.label() for t in trials if t.failure and t.role == role))
        picks[role] = best
    total = picks["first"][0] + picks["last"][0] + (picks["hidden"][0] * hidden_layers if hidden_layers else 0)
    tiles = FusedTiles(block_m=block_m, first=picks["first"][1], last=picks["last"][1],
                       hidden=picks["hidden"][1] if hidden_layers else picks["last"][1],
                       how=f"tuned at prepare: layers {total * 1e3:.3f} ms, {len(trials)} candidates")
    return tiles, tuple(trials)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:160]}" if text else type(exc).__name__


@dataclass
class TileCache:
    """Tuned tiles per (family, load), for the life of one process (as the forms' cache)."""

    _tiles: dict[tuple[Family, Load], FusedTiles] = field(default_factory=dict)

    def get(self, family: Family, load: Load) -> FusedTiles | None:
        return self._tiles.get((family, load))

    def put(self, family: Family, load: Load, tiles: FusedTiles) -> None:
        self._tiles[(family, load)] = tiles

    def lookup(self, family: Family, load: Load, element_bytes: int) -> FusedTiles:
        """Tiles for a forward, never measured here: tuned for this load, else for the nearest
        tuned load of this family (by tokens per expert), else the regime's defaults."""
        exact = self.get(family, load)
        if exact is not None:
            return exact
        tuned = [(other, tiles) for (fam, other), tiles in self._tiles.items() if fam == family]
        if tuned:
            def distance(item: tuple[Load, FusedTiles]) -> float:
                return abs(math.log(max(item[0].rows_per_expert, 1e-9) / max(load.rows_per_expert, 1e-9)))
            other, tiles = min(tuned, key=distance)
            return FusedTiles(block_m=tiles.block_m, first=tiles.first, hidden=tiles.hidden, last=tiles.last,
                              how=f"tuned for {other.rows_per_expert:.0f} tokens per expert, the nearest load")
        return default_tiles(load, family.layer_dims, element_bytes,
                             how="defaults of the load's regime (not measured: no tuning for this model yet)")

    def __len__(self) -> int:
        return len(self._tiles)


PROCESS_TILE_CACHE = TileCache()  # per process, as PROCESS_FORM_CACHE: a worker's later tasks reuse its tuning
