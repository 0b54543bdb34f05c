"""`moecluster estimate`: known models, explicit shapes, presets, sweep files, JSON and one-line errors."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from moecluster.cli import main


def _main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def test_json_for_known_models(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _main(capsys, "estimate", "--model", "mixtral-8x7b", "--model", "mixtral-8x22b", "--json")
    assert rc == 0
    rows = {r["model"]["name"]: r for r in json.loads(out)}
    assert rows["mixtral-8x7b"]["model"]["total_params"] == pytest.approx(46.7e9, rel=0.005)
    assert rows["mixtral-8x7b"]["model"]["active_params"] == pytest.approx(12.9e9, rel=0.005)
    assert rows["mixtral-8x22b"]["dense_equivalent_params"] == pytest.approx(90e9, rel=0.05)
    assert rows["mixtral-8x7b"]["critical_batch"] == pytest.approx(295.3, abs=0.1)


def test_default_table_is_seed_003s(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _main(capsys, "estimate")
    assert rc == 0
    for name in ("mixtral-8x7b", "deepseek-v2", "switch-c", "grok-1", "llama-4-scout", "llama-3.3-70b"):
        assert name in out
    assert "46.7 B" in out and "12.9 B" in out and "236 B" in out


def test_explicit_shape_and_preset(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _main(capsys, "estimate", "--experts", "8", "--top-k", "2", "--expert-params", "5.637B",
                       "--shared-params", "1.606B", "--d-model", "4096", "--moe-layers", "32", "--ep", "8",
                       "--preset", "xxl", "--json")
    assert rc == 0
    custom, xxl = sorted(json.loads(out), key=lambda r: r["model"]["name"])
    assert custom["model"]["total_params"] == 1_606_000_000 + 8 * 5_637_000_000
    assert custom["all_to_all_bytes_per_token"] == pytest.approx(2 * 8192 * 2 * 32 * 7 / 8)
    assert xxl["model"]["total_params"] == 2_789_237_600


def test_sweep_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep = tmp_path / "s.yaml"
    sweep.write_text("name: s\nmodels:\n  - preset: small\n  - preset: large\nimpl: [sorted]\n"
                     "dtype: [float32, bfloat16]\nbatch_size: 64\n")
    rc, out, _ = _main(capsys, "estimate", "--sweep", str(sweep), "--json")
    assert rc == 0
    rows = json.loads(out)
    assert sorted((r["model"]["name"], r["dtype"]) for r in rows) == [
        ("large", "bfloat16"), ("large", "float32"), ("small", "bfloat16"), ("small", "float32")]
    assert {r["batch_size"] for r in rows} == {64}


@pytest.mark.parametrize("args,message", [
    (("--model", "gpt-5"), "--model 'gpt-5' unknown"),
    (("--experts", "8"), "an explicit shape needs --top-k, --expert-params as well"),
    (("--experts", "8", "--top-k", "2", "--expert-params", "lots"), "--expert-params: 'lots' is not a count"),
    (("--experts", "2", "--top-k", "4", "--expert-params", "1M"), "top_k (4) exceeds num_experts (2)"),
    (("--experts", "8", "--top-k", "2", "--expert-params", "1e400"), "--expert-params: '1e400' is too large"),
    (("--experts", "8", "--top-k", "2", "--expert-params", "1M", "--shared-params", "1e20"),
     "--shared-params: '1e20' is too large"),
])
def test_bad_input_is_one_line(capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str) -> None:
    rc, _, err = _main(capsys, "estimate", *args)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("moecluster: error: ") and message in lines[0]


def test_console_script_end_to_end() -> None:
    script = Path(sys.executable).with_name("moecluster")
    cmd = ([str(script)] if script.exists()
           else [sys.executable, "-c", "from moecluster.cli import main; main()"])
    proc = subprocess.run([*cmd, "estimate", "--model", "deepseek-v2", "--gpu", "h200"], capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "deepseek-v2" in proc.stdout and "H200" in proc.stdout and "236 B" in proc.stdout


def test_a_sweep_s_problems_are_all_named_and_a_long_model_name_is_cut(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    sweep = tmp_path / "two.yaml"
    sweep.write_text("name: x\nmodels: [{preset: small}]\nbatch_size: -1\nrepeats: 0\n")
    rc, _, err = _main(capsys, "estimate", "--sweep", str(sweep))
    assert rc == 2
    assert [line.split(": ")[2:4] for line in err.splitlines()] == [[f"{sweep}:3", "batch_size"],
                                                                      [f"{sweep}:4", "repeats"]]
    rc, _, err = _main(capsys, "estimate", "--model", "q" * 5000)
    assert rc == 2 and len(err.splitlines()) == 1 and len(err) < 400 and "(a string of 5,000 chars)" in err
