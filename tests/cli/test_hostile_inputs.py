"""Hostile and malformed sweeps and options, through the real CLI: each is refused with exit 2 and
one line on stderr (a sweep with several bad keys: one line per problem, at most 20 and a count),
no line longer than 300 characters, no traceback, no run directory and no Ray.

Every sweep case runs twice: with `--dry-run`, and as a real submit, which must refuse before it
reaches Ray (the runs directory is never created).
"""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from moecluster.cli import MAX_ERROR_CHARS, main

MOECLUSTER = str(Path(sys.executable).parent / "moecluster")
GOOD = "name: t\nmodels: [{preset: small}]\ndevice: cpu\n"
LLM = "name: t\nworkload: llm\nmodels: [{preset: mixtral-8x7b}]\ndevice: cpu\n"
# the prefix, the kept head and tail, and the note of what was cut between them
MAX_LINE = len("moecluster: error: ") + MAX_ERROR_CHARS + len(" … (1,000,000,000 chars cut) … ")


def _nested(opening: str, closing: str, depth: int) -> str:
    return opening * depth + "1" + closing * depth


def _alias_chain(levels: int) -> str:
    lines = ["a0: &a0 [1]"] + [f"a{i}: &a{i} [*a{i - 1}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n" + GOOD


def _alias_bomb() -> str:
    levels = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]" for p, c in zip("abcdefgh", "bcdefghi")]
    return "\n".join(levels) + "\n" + GOOD


# id -> (file content: text, bytes, or a function making the path to give; expected text in the error)
Content = str | bytes | Callable[[Path], Path]
SWEEPS: dict[str, tuple[Content, str]] = {
    # numbers YAML allows but no node can use
    "batch_size 1e26 as an integer": (GOOD + f"batch_size: {10**26}\n",
                                      "batch_size: 100000000000000000000000000 is more than 2,147,483,647"),
    "batch_size 1e26 as a float": (GOOD + "batch_size: 1.0e+26\n", "batch_size: expected an integer, got 1e+26"),
    "batch_size 1e26 as YAML text": (GOOD + "batch_size: 1e26\n", "YAML reads 1e26 as text"),
    "batch_size negative": (GOOD + "batch_size: -5\n", "batch_size: must be greater than 0, got -5"),
    "batch_size a boolean": (GOOD + "batch_size: true\n", "batch_size: expected an integer, got True (bool)"),
    "batch_size nan": (GOOD + "batch_size: .nan\n", "batch_size: expected an integer, got nan"),
    "batch_size a string list": (GOOD + "batch_size: ['128']\n", "batch_size[0]: expected an integer, got '128'"),
    "duration_s infinite": (GOOD + "duration_s: .inf\n", "duration_s: must be a finite number, got inf"),
    "duration_s minus infinity": (GOOD + "duration_s: -.inf\n", "duration_s: must be a finite number"),
    "duration_s above a day": (GOOD + "duration_s: 100000.0\n", "duration_s: 100000.0 is more than 86,400"),
    "duration_s as text 1e9": (GOOD + "duration_s: 1e9\n", "duration_s: expected a number, got '1e9'"),
    "warmup_s a string": (GOOD + "warmup_s: '5'\n", "warmup_s: expected a number, got '5' (str)"),
    "repeats of centuries": (GOOD + "repeats: 100000000\nreplicates: 1\n",
                             "is estimated at 2,058,542 hours (234.8 years)"),
    "train_epochs of years": (GOOD + "train_epochs: 1000000\n", "more than --max-hours 168"),
    "train_epochs past 32 bits": (GOOD + "train_epochs: 100000000000000\n", "is more than 2,147,483,647"),
    "seed past 64 bits": (GOOD + f"seed: {2**64}\n",
                          "seed: 18446744073709551616 is more than 9,223,372,036,854,775,807"),
    "seed negative": (GOOD + "seed: -1\n", "seed: must be greater than or equal to 0"),
    "zipf_s huge": (GOOD + "load: zipf\nzipf_s: 1000.0\n", "zipf_s: 1000.0 is more than 100"),
    "zipf_s nan in a grid": (GOOD + "zipf_s: [1.0, .nan]\n", "zipf_s[1]: must be a finite number, got nan"),
    "expert_parallel zero": (GOOD + "expert_parallel: 0\n", "expert_parallel: must be greater than 0"),
    "num_experts past 32 bits": ("name: t\ndevice: cpu\nmodels: [{preset: small,"
                                 " num_experts: 100000000000000000000000}]\n",
                                 "models[0].num_experts: 100000000000000000000000 is more than 2,147,483,647"),
    "weights of petabytes": ("name: t\ndevice: cpu\nmodels: [{preset: small, expert_hidden_dim: 1000000000}]\n",
                             "GiB for the weights alone, more than the 1,024 GiB any task can hold"),
    "activations of terabytes": (GOOD + "batch_size: 2000000000\n",
                                 "GiB for 2,000,000,000 rows × 977), more than the 1,024 GiB any task"),
    "llm prompt_len 1e9": (LLM + "prompt_len: 1000000000\n", "KV cache 6.25e+07 GiB"),
    "llm decode batch past memory": (LLM + "phase: decode\nbatch_size: 2147483647\n", "lower batch_size or prompt_len"),
    "llm gen_tokens zero": (LLM + "gen_tokens: 0\n", "gen_tokens: must be greater than 0"),
    "an integer of 5,000 digits": (GOOD + "seed: " + "9" * 5000 + "\n", "an integer of 5,000 digits"),
    "a grid of 200 million tasks": (GOOD + f"seed: [{', '.join(map(str, range(20000)))}]\nbatch_size: "
                                    f"[{', '.join(map(str, range(1, 5001)))}]\n", "more than --max-tasks 10,000"),
    # wrong shapes and types
    "models a string": ("name: t\nmodels: small\n", "models: expected a list, got 'small'"),
    "models empty": ("name: t\nmodels: []\n", "models: must not be empty"),
    "device a number": ("name: t\nmodels: [{preset: small}]\ndevice: 5\n", "device: 5 is not one of cuda, cpu"),
    "impl a mapping": (GOOD + "impl: {a: 1}\n", "impl: {'a': 1} is not one of naive"),
    "share_twins a string": (GOOD + "share_twins: 'yes'\n", "share_twins: expected true or false, got 'yes'"),
    # hostile strings: cut to one short line, control characters escaped
    "accelerator_type of 1 MB": (GOOD + "accelerator_type: " + "A" * 10**6 + "\n", "(a string of 1,000,000 chars)"),
    "preset of 1 MB": ("name: t\nmodels: [{preset: " + "p" * 10**6 + "}]\n", "is longer than 80 characters"),
    "unknown key of 1 MB": (GOOD + "? " + "k" * 10**6 + "\n: 1\n", "… (1,000,000 chars): unknown key"),
    "name with a right-to-left override": ('name: "t\\u202eexe.yaml"\nmodels: [{preset: small}]\n',
                                          "name: 't\\u202eexe.yaml' may hold only letters"),
    "name with a terminal escape": ('name: "t\\e[31mred"\nmodels: [{preset: small}]\n', "'t\\x1b[31mred'"),
    "name with a newline": ('name: "a\\nb"\nmodels: [{preset: small}]\n', "name: 'a\\nb' may hold only"),
    "accelerator_type with a newline": (GOOD + 'accelerator_type: "H100\\nrm -rf"\n', "'H100\\nrm -rf' may hold"),
    # hostile YAML
    "20,000-deep lists": (GOOD + "x: " + _nested("[", "]", 20000) + "\n", "nested more than 16 levels deep"),
    "20,000-deep mappings": (GOOD + "x: " + _nested("{a: ", "}", 20000) + "\n", "nested more than 16 levels deep"),
    "alias chain 300 deep": (_alias_chain(300), "nested more than 16 levels deep once YAML aliases are expanded"),
    "alias referring to itself": ("a: &a [*a]\n" + GOOD, "once YAML aliases are expanded"),
    "alias bomb": (_alias_bomb(), "YAML aliases expand to more than 100,000 nodes"),
    "python object tag": ('name: !!python/object/apply:os.system ["echo pwned"]\nmodels: [{preset: small}]\n',
                          "t.yaml:1:7: tag !!python/object/apply:os.system is not allowed"),
    "python name tag": (GOOD + "x: !!python/name:os.system\n", "t.yaml:4:4: tag !!python/name:os.system is not"),
    "local tag": (GOOD + "repeats: !fancy 3\n", "t.yaml:4:10: tag !fancy is not allowed"),
    "binary tag": (GOOD + "x: !!binary aGVsbG8=\n", "tag !!binary is not allowed"),
    "set tag": (GOOD + "x: !!set {a, b}\n", "tag !!set is not allowed"),
    "a tag of 1 MB": (GOOD + "x: !" + "t" * 2**19 + " 1\n", "(524,289 chars) is not allowed"),
    "impossible timestamp": (GOOD + "x: 2024-13-45\n",
                             "t.yaml:4:4: cannot read the value '2024-13-45': month must be in 1..12"),
    "a list at the top": ("- name: t\n- models: [{preset: small}]\n", "not a sweep: the file is a YAML list"),
    "a scalar at the top": ("just words\n", "not a sweep: the file is a YAML str"),
    "an empty file": ("", "not a sweep: the file is empty"),
    "comments only": ("# name: t\n# models: []\n", "not a sweep: the file is empty"),
    "two documents": (GOOD + "---\n" + GOOD,
                      "t.yaml:4: not valid YAML: expected a single document in the stream but found another document"),
    "unclosed bracket": ("name: t\nmodels: [{preset: small}\n", "t.yaml:3: not valid YAML"),
    "duplicate keys": (GOOD + "repeats: 1\nrepeats: 2\n", "t.yaml:5: repeats: duplicate key"),
    "a list as a key": (GOOD + "? [a, b]\n: 1\n", "t.yaml:4: a key must be a plain name"),
    "a NUL byte": (GOOD + "x: a\x00b\n",
                   "t.yaml:4: not valid YAML: unacceptable character #x0000 (a control character)"),
    "latin-1 text": ("name: caf\xe9\nmodels: [{preset: small}]\n".encode("latin-1"),
                     "not UTF-8 text (byte 0xe9 at offset 9)"),
    "binary garbage": (bytes(range(256)) * 64, "not UTF-8 text (byte 0x80 at offset 128)"),
    "a file over 1 MiB": (GOOD + "# " + "x" * 2**20 + "\n",
                          "bytes, more than the 1,048,576 bytes a sweep file may have"),
    "a directory": (lambda tmp: _mkdir(tmp / "t.yaml"), "t.yaml: is a directory"),
    "a FIFO": (lambda tmp: _mkfifo(tmp / "t.yaml"), "t.yaml: is not a regular file"),
    "/dev/zero": (lambda tmp: Path("/dev/zero"), "/dev/zero: is not a regular file"),
    "a symlink loop": (lambda tmp: _symlink_loop(tmp / "t.yaml"), "t.yaml: cannot read: Too many levels"),
    "no such file": (lambda tmp: tmp / "absent.yaml", "absent.yaml: no such file"),
}


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def _mkfifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _symlink_loop(path: Path) -> Path:
    other = path.with_name("other.yaml")
    path.symlink_to(other)
    other.symlink_to(path)
    return path


def _sweep(tmp: Path, content: Content) -> str:
    if callable(content):
        path = content(tmp)
        return str(path.relative_to(tmp)) if path.is_relative_to(tmp) else str(path)
    target = tmp / "t.yaml"
    target.write_bytes(content if isinstance(content, bytes) else content.encode())
    return "t.yaml"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    with pytest.raises(SystemExit) as info:
        main(list(args))
    return int(info.value.code or 0), capsys.readouterr().err.splitlines()


def refused(code: int, lines: list[str], expected: str, count: int = 1) -> None:
    """Exit 2, `count` lines each a short one-line error, no traceback; `expected` in one of them."""
    assert code == 2, lines
    assert len(lines) == count, lines
    for line in lines:
        assert line.startswith("moecluster: error: ") and len(line) <= MAX_LINE, line[:700]
        assert "Traceback" not in line
    assert any(expected in line for line in lines), (expected, [line[:700] for line in lines])


def ray_started() -> bool:
    ray = sys.modules.get("ray")
    return ray is not None and bool(ray.is_initialized())


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in a fresh directory, so messages name `t.yaml` (short) and `./runs` is the default root."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MOECLUSTER_RUNS_DIR", raising=False)
    return tmp_path


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "submit"])
@pytest.mark.parametrize("case", list(SWEEPS))
def test_hostile_sweep_is_one_line_exit_2_and_starts_nothing(case: str, dry_run: bool, cwd: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    content, expected = SWEEPS[case]
    sweep = _sweep(cwd, content)
    code, lines = run(capsys, "submit", sweep, "--no-agents", *(["--dry-run"] if dry_run else []))
    refused(code, lines, expected)
    assert not (cwd / "runs").exists() and not ray_started()


OPTIONS: dict[str, tuple[list[str], str]] = {
    "cpus-per-task below Ray's unit": (["--cpus-per-task", "1e-300"], "1e-300 is below 0.0001, the smallest"),
    "cpus-per-task above any node": (["--cpus-per-task", "100000"], "'--cpus-per-task': 100000.0 is not in the range"),
    "cpus-per-task nan": (["--cpus-per-task", "nan"], "'nan' is not a finite number"),
    "cpus-per-task negative": (["--cpus-per-task", "-1"], "'--cpus-per-task'"),
    "num-cpus in float notation": (["--num-cpus", "1e9"], "'1e9' is not a valid integer"),
    "num-cpus past any machine": (["--num-cpus", "100000"], "'--num-cpus': 100000 is not in the range 1<=x<=4096"),
    "num-gpus of 400 digits": (["--num-gpus", "9" * 400], "is not a number of at most 40 characters"),
    "max-retries a million": (["--max-retries", "1000000"], "'--max-retries': 1000000 is not in the range"),
    "max-tasks zero": (["--max-tasks", "0"], "'--max-tasks': 0 is not in the range"),
    "max-hours zero": (["--max-hours", "0"], "'--max-hours': 0.0 is not in the range"),
    "max-hours infinite": (["--max-hours", "inf"], "'--max-hours': 'inf' is not a finite number"),
    "set 1e26": (["--set", "batch_size=1e26"], "--set: batch_size: expected an integer, got '1e26'"),
    "set 20,000-deep": (["--set", "repeats=" + _nested("[", "]", 20000)], "--set: repeats: nested more than 16"),
    "set a python tag": (["--set", "repeats=!!python/object/apply:os.system [ls]"],
                         "--set: repeats: tag !!python/object/apply:os.system is not allowed"),
    "set a value of 1 MB": (["--set", "accelerator_type=" + "A" * 2**20], "(a string of 1,048,576 chars)"),
    "set a key of 1 MB": (["--set", "k" * 2**20 + "=1"], "… (1,048,576 chars): unknown key"),
    "set without a value": (["--set", "x" * 2**20], "expected KEY=VALUE"),
    "set an integer of 5,000 digits": (["--set", "batch_size=" + "9" * 5000],
                                       "--set: batch_size: an integer of 5,000 digits is no count"),
    "set a mapping key": (["--set", "batch_size={[1]: 2}"], "--set: batch_size: a key must be a plain name"),
    "set nan seed": (["--set", "seed=.nan"], "--set: seed: expected an integer, got nan"),
    "set a terminal escape": (["--set", "name=a\x1b[2Jb"],
                              "--set: name: not valid YAML: unacceptable character #x001b"),
    "set an escaped terminal escape": (["--set", 'name="a\\e[2Jb"'], "--set: name: 'a\\x1b[2Jb' may hold only"),
    "set huge repeats": (["--set", "repeats=100000000"], "more than --max-hours 168"),
    "meter of 1 MB": (["--meter", "m" * 2**20], "Invalid value for '--meter': 'mmm"),
    "meter of 1 MB with newlines": (["--meter", "a\nb" * 2**18], "'a\\nba\\nb"),
}


@pytest.mark.parametrize("case", list(OPTIONS))
def test_hostile_option_is_one_line_exit_2_and_starts_nothing(case: str, cwd: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    args, expected = OPTIONS[case]
    (cwd / "t.yaml").write_text(GOOD)
    code, lines = run(capsys, "submit", "t.yaml", "--no-agents", *args)
    refused(code, lines, expected)
    assert not (cwd / "runs").exists() and not ray_started()


def test_every_problem_of_a_sweep_is_listed_with_its_line(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (cwd / "t.yaml").write_text("name: t\nmodels: [{preset: small, topk: 2}]\nbatch_sze: 1\nrepeats: x\n"
                                "repeats: 2\ndevice: gpu\n")
    code, lines = run(capsys, "submit", "t.yaml", "--dry-run")
    refused(code, lines, "", count=4)
    assert [line.removeprefix("moecluster: error: ").split(": ")[0:2] for line in lines] == [
        ["t.yaml:2", "models[0].topk"], ["t.yaml:3", "batch_sze"], ["t.yaml:5", "repeats"], ["t.yaml:6", "device"]]
    assert not (cwd / "runs").exists()


def test_more_than_twenty_problems_are_cut_with_a_count(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (cwd / "t.yaml").write_text(GOOD + "".join(f"bad_{i}: 1\n" for i in range(30)))
    code, lines = run(capsys, "submit", "t.yaml")
    refused(code, lines, "t.yaml: 10 more problems not shown (30 in all)", count=21)
    assert lines[0].startswith("moecluster: error: t.yaml:4: bad_0: unknown key")
    assert not (cwd / "runs").exists()


def test_a_refused_sweep_leaves_existing_runs_untouched(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    earlier = cwd / "runs" / "earlier-run"
    earlier.mkdir(parents=True)
    (earlier / "results.db").write_bytes(b"stored results")
    (cwd / "t.yaml").write_text(GOOD + "batch_size: 100000000000000000000000000\n")
    code, lines = run(capsys, "submit", "t.yaml")
    refused(code, lines, "is more than 2,147,483,647")
    assert sorted(p.name for p in (cwd / "runs").rglob("*")) == ["earlier-run", "results.db"]
    assert (earlier / "results.db").read_bytes() == b"stored results"


@pytest.mark.parametrize("args, expected", [
    (["--batch-size", "1e26"], "'1e26' is not a valid integer"),
    (["--batch-size", "100000000000"], "'--batch-size': 100000000000 is not in the range 1<=x<=2147483647"),
    (["--seed", "-1"], "'--seed': -1 is not in the range"),
    (["--zipf-s", "1e9"], "'--zipf-s': 1000000000.0 is not in the range"),
    (["--duration", "1e9"], "'--duration': 1000000000.0 is not in the range"),
    (["--repeats", "9" * 100], "is not a number of at most 40 characters"),
    (["--device", "cpu", "--batch-size", "2000000000"], "more than the 1,024 GiB any task can hold; lower batch_size"),
    (["--workload", "llm", "--prompt-len", "9999999999"], "'--prompt-len': 9999999999 is not in the range"),
    (["--workload", "llm", "--preset", "p" * 10**5], "'--preset': 'ppp"),
    (["--preset", "p" * 10**5], "… (a string of 100,000 chars) is longer than 80 characters"),
])
def test_bench_refuses_numbers_no_device_can_run(args: list[str], expected: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = run(capsys, "bench", *args)
    refused(code, lines, expected)


@pytest.mark.parametrize("args, expected", [
    (["--batch-size", "100000000000000000000"], "'--batch-size': 100000000000000000000 is not in the range"),
    (["--experts", "1e9", "--top-k", "1", "--expert-params", "1B"], "'1e9' is not a valid integer"),
    (["--ep", "9" * 1000], "is not a number of at most 40 characters"),
])
def test_estimate_refuses_counts_beyond_the_sweeps_bound(args: list[str], expected: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = run(capsys, "estimate", *args)
    refused(code, lines, expected)


@pytest.mark.parametrize("case", ["python object tag", "20,000-deep lists", "a FIFO", "a file over 1 MiB",
                                  "batch_size 1e26 as an integer", "llm prompt_len 1e9"])
def test_hostile_sweeps_through_the_console_script(case: str, tmp_path: Path) -> None:
    """The installed `moecluster` refuses before Ray: one line, exit 2, no runs directory (the timeout
    is a generous bound: a refusal reads one file of at most 1 MiB)."""
    content, expected = SWEEPS[case]
    sweep = _sweep(tmp_path, content)
    env = {k: v for k, v in os.environ.items() if k != "MOECLUSTER_RUNS_DIR"}
    done = subprocess.run([MOECLUSTER, "submit", sweep, "--no-agents"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env=env)
    refused(done.returncode, done.stderr.splitlines(), expected)
    assert done.stdout == "" and not (tmp_path / "runs").exists()


def test_the_cpu_unit_is_rays_own() -> None:
    from ray._private.ray_constants import MIN_RESOURCE_GRANULARITY

    from moecluster.cli.finite import RAY_RESOURCE_GRANULARITY

    assert RAY_RESOURCE_GRANULARITY == MIN_RESOURCE_GRANULARITY


@pytest.mark.parametrize("cpus", ["0", "0.0001", "1024"])
def test_cpus_per_task_at_its_bounds_is_accepted(cpus: str, cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (cwd / "t.yaml").write_text(GOOD)
    code, lines = run(capsys, "submit", "t.yaml", "--dry-run", "--cpus-per-task", cpus)
    assert code == 0 and lines == []
