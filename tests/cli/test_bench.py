"""`moecluster bench` through the installed console script."""
import json
import subprocess

import pytest


def moecluster(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["moecluster", *args], check=False, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("preset, params", [("small", "2,687,192"), ("medium", "63,418,800"),
                                            ("large", "368,287,260"), ("xxl", "2,789,237,600")])
def test_dry_run_prints_the_seeds_parameter_counts(preset, params):
    out = moecluster("bench", "--preset", preset, "--dry-run")
    assert out.returncode == 0, out.stderr
    assert params in out.stdout and "dense/seed" in out.stdout


def test_dry_run_json_with_overrides():
    out = moecluster("bench", "--preset", "small", "--num-experts", "4", "--top-k", "1", "--match", "active",
                     "--dry-run", "--json")
    data = json.loads(out.stdout)
    assert data["moe"]["num_experts"] == 4 and data["moe"]["top_k"] == 1
    active = data["moe"]["params"]["active_per_token"]
    assert abs(data["dense"]["params"]["total"] - active) <= 1e-3 * active


@pytest.mark.parametrize("args, culprit", [
    (["--preset", "huge"], "--preset"),
    (["--top-k", "9"], "top_k (9) is larger than num_experts (8)"),
    (["--batch-size", "0"], "--batch-size"),
    (["--expert-hidden-dim", "-4"], "--expert-hidden-dim"),
    (["--device", "cuda", "--duration", "1"], "--device cuda"),
    (["--cuda-graphs", "--eager"], "--cuda-graphs and --eager exclude each other"),
    (["--duration", "inf"], "'--duration': 'inf' is not a finite number"),
    (["--duration", "nan"], "'--duration': 'nan' is not a finite number"),
    (["--warmup", "inf"], "'--warmup': 'inf' is not a finite number"),
    (["--zipf-s", "nan"], "'--zipf-s': 'nan' is not a finite number"),
    (["--cuda-graphs", "--impl", "naive"], "--cuda-graphs is impossible with --impl naive: naive syncs with the host"),
    (["--cuda-graphs", "--device", "cpu"], "--cuda-graphs needs --device cuda"),
])
def test_bad_input_is_one_line_and_exit_2(args, culprit):
    out = moecluster("bench", *args)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and culprit in lines[0] and lines[0].startswith("moecluster: error:")


def test_cpu_pair_runs_and_reports_json():
    out = moecluster("bench", "--preset", "small", "--device", "cpu", "--duration", "0.3", "--warmup", "0.05",
                     "--repeats", "2", "--json", timeout=300)
    assert out.returncode == 0, out.stderr
    dense, moe = json.loads(out.stdout)
    assert dense["spec"]["kind"] == "dense" and moe["spec"]["kind"] == "moe" and moe["spec"]["impl"] == "grouped"
    for r in (dense, moe):
        assert r["status"] == "ok" and len(r["windows"]) == 2
        assert r["energy_source"] is None and r["energy_unavailable_reason"]
        assert r["roofline"]["fraction"] > 0


def test_help_names_the_graph_modes():
    out = moecluster("bench", "--help")
    assert out.returncode == 0 and "--eager" in out.stdout and "--cuda-graphs" in out.stdout


def test_cpu_pair_table_with_fake_meter():
    out = moecluster("bench", "--device", "cpu", "--duration", "0.2", "--warmup", "0", "--meter", "fake",
                     timeout=300)
    assert out.returncode == 0, out.stderr
    assert "MoE / dense [95 % CI]" in out.stdout and "fake-power-model" in out.stdout
    ratio_row = next(line for line in out.stdout.splitlines() if "MoE / dense" in line)
    assert ratio_row.count("[") >= 3  # 3 counterbalanced windows by default: every ratio has its interval
    assert "no 95 % interval" not in out.stderr


def test_a_single_window_warns_in_one_line_that_it_has_no_interval():
    from dataclasses import replace

    from moecluster.spec.records import TaskResult, TaskSpec, Window
    from moecluster.cli.bench import no_interval_warning

    def result(kind: str, windows: int, rate: float) -> TaskResult:
        spec = TaskSpec(task_id=f"p-{kind}", pair_id="p", kind=kind, impl="dense" if kind == "dense" else "grouped",
                        model={}, match="total" if kind == "dense" else None, repeats=windows)
        ws = tuple(Window(inferences=int(rate * (1 + 0.01 * i)), duration_s=1.0, energy_j=100.0 + i, avg_power_w=100.0)
                   for i in range(windows))
        return TaskResult(spec=spec, status="ok", windows=ws, energy_source="fake-power-model")

    one = no_interval_warning([result("dense", 1, 1000), result("moe", 1, 900)])
    assert one is not None and "\n" not in one and one.startswith("moecluster: warning: MoE/dense throughput")
    assert "(1 window per model (--repeats 1))" in one
    assert no_interval_warning([result("dense", 3, 1000), result("moe", 3, 900)]) is None
    failed = replace(result("moe", 3, 900), status="failed")
    assert no_interval_warning([result("dense", 3, 1000), failed]) is None


def test_the_forms_table_shows_each_models_form_with_brackets_intact():
    from rich.console import Console

    from moecluster.spec.records import TaskResult, TaskSpec
    from moecluster.cli.bench import _form_table

    spec = TaskSpec(task_id="t", pair_id="p", kind="dense", impl="dense", model={}, match="total")
    form = {"layout": "addmm [in,out]", "kernel": "torch.addmm", "graph": "captured",
            "candidates": "F.linear [out,in] graph 1.000 ms; addmm [in,out] graph 0.900 ms"}
    table = _form_table([TaskResult(spec=spec, status="ok", form=form)])
    assert table is not None
    console = Console(width=300, record=True)
    console.print(table)
    text = console.export_text()
    assert "addmm [in,out]" in text and "F.linear [out,in] graph 1.000 ms" in text
    assert _form_table([TaskResult(spec=spec, status="ok")]) is None
