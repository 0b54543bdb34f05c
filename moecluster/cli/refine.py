"""`moecluster refine RUN_ID`: a sweep that measures sizes where a run's break-even was interpolated across a
wide gap (`sweep.refine`), instead of trusting a straight line across an order of magnitude."""
from __future__ import annotations

from pathlib import Path

import click
import yaml

from moecluster.spec.mlp.shapes import MoEShape
from moecluster.report.aggregate import aggregate
from moecluster.report.aggregate.breakeven import MAX_GAP, fmt_params
from moecluster.head.rundir import find_run, runs_root
from moecluster.head.store import RunStore, StoreDamaged
from moecluster.report.refine import refined_models, refined_sweep

from moecluster.cli.errors import InputError

SWEEP_FILE = "sweep.yaml"  # `rundir.SWEEP_FILE`: the run's resolved sweep


def _shape_text(s: MoEShape) -> str:
    return f"{s.num_experts} experts × {s.expert_hidden_dim} wide × {s.expert_num_layers} layers, top-{s.top_k}"


@click.command("refine")
@click.argument("run_id")
@click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where runs are stored (default: $MOECLUSTER_RUNS_DIR or ./runs).")
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the refined sweep here (default: print it).")
@click.option("--max-gap", type=click.FloatRange(min=1.1, max=1000.0), default=MAX_GAP, show_default=True,
              help="Plan sizes until neighbouring measured sizes are at most this many times apart.")
def refine(run_id: str, runs_dir: Path | None, out_file: Path | None, max_gap: float) -> None:
    """Plan sizes between the measured ones where RUN_ID's break-even was interpolated across a wide gap.

    Reads RUN_ID's break-evens (total energy and above idle); where one lies between two measured
    sizes more than --max-gap times apart, adds models at the geometric midpoints (explicit shapes)
    to the run's resolved sweep and writes it as a new sweep, `<name>-refined`, to submit as a new run.
    """
    run_dir = find_run(runs_root(runs_dir), run_id)
    try:
        with RunStore(run_dir, read_only=True) as store:
            results = store.results()
    except StoreDamaged as exc:
        raise InputError(f"run {run_id!r} is damaged: {exc}") from None
    try:
        resolved = yaml.safe_load((run_dir / SWEEP_FILE).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"run {run_id!r} has no readable {SWEEP_FILE}: {exc}") from None
    agg = aggregate(results)
    planned = refined_models([*agg.break_evens, *agg.break_evens_above_idle], max_gap)
    if not planned:
        click.echo(f"run {run_id}: no break-even lies between measured sizes more than {max_gap:g}× apart;"
                   " nothing to refine")
        return
    for m in planned:
        click.echo(f"adds {m.name}: {_shape_text(m.shape)}, {fmt_params(m.total_params)} parameters"
                   f" (between {m.between[0]} and {m.between[1]})", err=True)
    doc = refined_sweep(resolved, planned)
    text = (f"# planned by `moecluster refine {run_id}`: sizes where its break-evens were interpolated across more"
            f" than {max_gap:g}x\n" + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    if out_file is None:
        click.echo(text, nl=False)
        return
    try:
        out_file.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"--out {out_file}: cannot write: {exc.strerror or exc}") from None
    click.echo(f"wrote {out_file}; run it: moecluster submit {out_file}", err=True)


COMMANDS = [refine]
