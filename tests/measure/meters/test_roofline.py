"""The roofline of a task's windows against given peaks: time, fraction, bound, and a note above 1."""
import pytest

from moecluster.measure.meters.peaks import Peaks, format_rate
from moecluster.measure.meters.roofline import roofline
from moecluster.spec.records import Window

PEAKS = Peaks(flops_per_s=1e12, bytes_per_s=1e11, source="measured: test peaks")


def windows(*pairs: tuple[int, float]) -> list[Window]:
    return [Window(inferences=n, duration_s=s) for n, s in pairs]


def test_compute_bound_fraction_over_all_windows() -> None:
    # 3000 items x 1e9 FLOPs = 3e12 FLOPs -> 3 s at 1e12 FLOP/s; memory: 30 batches x 1e9 B -> 0.3 s
    r = roofline(1e9, 1e9, 100, windows((1000, 2.0), (2000, 4.0)), PEAKS)
    assert r.bound == "compute"
    assert r.time_s == pytest.approx(3.0) and r.fraction == pytest.approx(0.5)
    assert (r.peak_flops, r.peak_bytes_per_s, r.peak_source) == (1e12, 1e11, "measured: test peaks")
    assert (r.flops_per_item, r.bytes_per_batch) == (1e9, 1e9)
    assert r.note is None


def test_memory_bound_fraction() -> None:
    # 10 batches x 1e11 B = 1e12 B -> 10 s at 1e11 B/s; compute 1000 x 1e6 = 1e9 FLOPs -> 1 ms
    r = roofline(1e6, 1e11, 100, windows((1000, 20.0)), PEAKS)
    assert r.bound == "memory"
    assert r.time_s == pytest.approx(10.0) and r.fraction == pytest.approx(0.5)
    assert r.note is None


def test_at_the_roofline_exactly_has_no_note() -> None:
    r = roofline(1e9, 0.0, 1, windows((1000, 1.0)), PEAKS)
    assert r.fraction == pytest.approx(1.0) and r.note is None


def test_above_the_roofline_compute_names_both_rates() -> None:
    r = roofline(1e9, 0.0, 1, windows((1009, 1.0)), PEAKS)
    assert r.fraction == pytest.approx(1.009)
    assert r.note is not None
    assert r.note.startswith("above the roofline (1.009, compute-bound)")
    assert format_rate(1.009e12, "FLOP/s") in r.note and format_rate(1e12, "FLOP/s") in r.note
    assert "measured: test peaks" in r.note


def test_above_the_roofline_memory_names_both_rates() -> None:
    r = roofline(1.0, 1.41e11, 1, windows((1, 1.0)), PEAKS)
    assert r.bound == "memory" and r.fraction == pytest.approx(1.41)
    assert r.note is not None
    assert format_rate(1.41e11, "B/s") in r.note and format_rate(1e11, "B/s") in r.note
    assert "cache" in r.note


def test_no_time_measured_gives_fraction_zero() -> None:
    r = roofline(1e9, 1e9, 10, [], PEAKS)
    assert (r.time_s, r.fraction, r.note) == (0.0, 0.0, None)


@pytest.mark.parametrize("items_per_batch, peaks", [
    (0, PEAKS),
    (1, Peaks(flops_per_s=0.0, bytes_per_s=1.0, source="x")),
    (1, Peaks(flops_per_s=1.0, bytes_per_s=-1.0, source="x")),
])
def test_bad_input_is_refused(items_per_batch: int, peaks: Peaks) -> None:
    with pytest.raises(ValueError):
        roofline(1.0, 1.0, items_per_batch, windows((1, 1.0)), peaks)
