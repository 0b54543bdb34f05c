"""Loading sweep files: valid files, and one-line errors naming file, line and key."""
from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from moecluster.workloads.workload import DTYPES
from moecluster.workloads.mlp.models import IMPLS
from moecluster.head.sweep import SweepError, SweepFile, load_sweep, parse_sweep
from moecluster.head.sweep.schema import DType, Impl

def error_of(text: str, **kw: object) -> SweepError:
    with pytest.raises(SweepError) as info:
        parse_sweep(textwrap.dedent(text), Path("sweep.yaml"), **kw)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message
    return info.value


def test_vocabulary_matches_the_benchmark_core() -> None:
    from moecluster.workloads.llm.workload import IMPLS as LLM_WORKLOAD_IMPLS
    from moecluster.head.sweep.schema import LLM_IMPLS, MLP_IMPLS

    assert set(MLP_IMPLS) == set(IMPLS) and set(LLM_IMPLS) == set(LLM_WORKLOAD_IMPLS)
    assert set(Impl.__args__) == set(IMPLS) | set(LLM_IMPLS)  # type: ignore[attr-defined]
    assert set(DType.__args__) == set(DTYPES)  # type: ignore[attr-defined]


def test_issue_example_loads_with_scalars_as_one_value_axes(issue_example: str) -> None:
    sweep = parse_sweep(issue_example)
    assert sweep.impl == ["naive", "sorted", "grouped"]
    assert sweep.match == ["total"] and sweep.expert_parallel == [1]
    assert sweep.models[1].shape().num_experts == 16
    assert sweep.varying() == ["impl", "dtype", "batch_size"]


@pytest.mark.parametrize("name", ["quickstart.yaml", "seed-scaling.yaml"])
def test_shipped_examples_load(name: str, examples: Path) -> None:
    sweep = load_sweep(examples / name)
    assert isinstance(sweep, SweepFile)


def test_resolved_dump_reloads_to_the_same_sweep(issue_example: str) -> None:
    import yaml

    sweep = parse_sweep(issue_example)
    dumped = yaml.safe_dump(sweep.model_dump(mode="json", exclude_none=True))
    assert parse_sweep(dumped) == sweep


def test_unknown_key_suggests_the_closest_with_its_line() -> None:
    err = error_of("""\
        name: x
        models:
          - preset: small
          - name: wide
            num_expert: 16
        """)
    assert err.line == 5 and err.key == "models[1].num_expert"
    assert "did you mean 'num_experts'" in str(err) and str(err).startswith("sweep.yaml:5:")


def test_unknown_top_level_key() -> None:
    err = error_of("name: x\nmodels: [{preset: small}]\nbatchsize: 128\n")
    assert err.line == 3 and "did you mean 'batch_size'" in str(err)


def test_wrong_type_names_the_key_without_an_index_for_a_scalar() -> None:
    err = error_of("name: x\nmodels: [{preset: small}]\nbatch_size: lots\n")
    assert err.key == "batch_size" and err.line == 3 and "expected an integer" in str(err)


def test_wrong_type_inside_a_list_names_the_element() -> None:
    err = error_of("name: x\nmodels: [{preset: small}]\nbatch_size:\n  - 128\n  - 12.5\n")
    assert err.key == "batch_size[1]" and err.line == 5


def test_bad_choice_suggests() -> None:
    err = error_of("name: x\nmodels: [{preset: small}]\nimpl: [naive, sortd]\n")
    assert err.key == "impl[1]" and "did you mean 'sorted'" in str(err)


def test_impossible_shape_points_at_the_field() -> None:
    err = error_of("""\
        name: x
        models:
          - name: odd
            num_experts: 2
            expert_hidden_dim: 64
            expert_num_layers: 2
            top_k: 3
        """)
    assert err.key == "models[0].top_k" and err.line == 7 and "larger than num_experts" in str(err)


def test_unknown_preset_suggests() -> None:
    err = error_of("name: x\nmodels:\n  - preset: smal\n")
    assert err.key == "models[0].preset" and "did you mean 'small'" in str(err)


def test_explicit_model_needs_every_shape_field() -> None:
    err = error_of("name: x\nmodels:\n  - name: half\n    num_experts: 4\n")
    assert err.key == "models[0]" and "expert_hidden_dim" in str(err)


def test_empty_grid_axis() -> None:
    err = error_of("name: x\nmodels: [{preset: small}]\ndtype: []\n")
    assert err.key == "dtype" and "empty" in str(err)


def test_empty_models() -> None:
    err = error_of("name: x\nmodels: []\n")
    assert err.key == "models" and "empty" in str(err)


def test_expert_parallel_must_divide_the_experts() -> None:
    err = error_of("name: x\nmodels: [{preset: small}]\nexpert_parallel: [1, 3]\n")
    assert err.key == "expert_parallel" and err.line == 3 and "does not divide" in str(err)


def test_duplicate_key_is_an_error() -> None:
    err = error_of("name: x\nmodels: [{preset: small}]\nrepeats: 1\nrepeats: 2\n")
    assert err.line == 4 and "duplicate key" in str(err)


def test_not_yaml_gives_the_parser_line() -> None:
    err = error_of("name: x\nmodels: [preset: small\nimpl: naive\n")
    assert "not valid YAML" in str(err) and err.line is not None


def test_not_a_mapping() -> None:
    err = error_of("- just\n- a list\n")
    assert "must be a YAML mapping" in str(err)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SweepError, match="no such file"):
        load_sweep(tmp_path / "absent.yaml")


def test_overrides_replace_keys_and_are_blamed_as_set(issue_example: str) -> None:
    sweep = parse_sweep(issue_example, overrides={"repeats": 1, "impl": "naive"})
    assert sweep.repeats == 1 and sweep.impl == ["naive"]
    err = error_of(issue_example, overrides={"repeats": 0})
    assert str(err).startswith("--set: repeats:") and "greater than 0" in str(err)


def test_default_name_is_the_file_stem() -> None:
    sweep = parse_sweep("models: [{preset: small}]\n", Path("my sweep.yaml"))
    assert sweep.name == "my-sweep"


def test_small_aliases_still_load() -> None:
    sweep = parse_sweep("name: t\nmodels: [{preset: small, num_experts: &e 4}]\nbatch_size: [*e]\n")
    assert sweep.batch_size == [4]


def test_alias_bomb_is_refused_before_expansion() -> None:
    levels = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]" for p, c in zip("abcdefgh", "bcdefghi")]
    err = error_of("\n".join(levels) + "\nname: t\nmodels: [{preset: small}]\n")
    assert "aliases expand to more than 100,000 nodes" in str(err)


def test_every_problem_is_reported_in_file_order_with_its_line() -> None:
    err = error_of("name: x\nmodels: [{preset: small, topk: 1}]\nbatchsize: 1\nrepeats: 1\nrepeats: x\n")
    assert [p.split(": ")[0:2] for p in err.problems] == [
        ["sweep.yaml:2", "models[0].topk"], ["sweep.yaml:3", "batchsize"], ["sweep.yaml:5", "repeats"],
        ["sweep.yaml:5", "repeats"]]
    assert "duplicate key" in err.problems[2] and "expected an integer" in err.problems[3]
    assert str(err).endswith("(and 3 more problems in this sweep)") and err.line == 2


def test_report_lines_cut_after_twenty_with_a_count() -> None:
    err = error_of("name: x\nmodels: [{preset: small}]\n" + "".join(f"k{i}: 1\n" for i in range(25)))
    lines = err.report_lines()
    assert len(err.problems) == 25 and len(lines) == 21
    assert lines[-1] == "sweep.yaml: 5 more problems not shown (25 in all)"


@pytest.mark.parametrize("text, expected", [
    ("name: x\nmodels: [{preset: small}]\nx: " + "[" * 17 + "]" * 17 + "\n", "sweep.yaml:3:19: nested more than 16"),
    ("name: !!python/object/apply:os.system [ls]\n", "sweep.yaml:1:7: tag !!python/object/apply:os.system is not"),
    ("name: !!str x\nmodels: !!seq [{preset: !!str small}]\nrepeats: !!int 2\n", None),
    ("a: &a [*a]\nname: x\nmodels: [{preset: small}]\n", "nested more than 16 levels deep once YAML aliases"),
    ("name: x\nmodels: [{preset: small}]\nseed: " + "1" * 41 + "\n", "sweep.yaml:3: an integer of 41 digits"),
    ("name: x\nmodels: [{preset: small}]\n? {a: 1}\n: 2\n", "sweep.yaml:3: a key must be a plain name"),
])
def test_unsafe_yaml_is_refused_before_it_is_constructed(text: str, expected: str | None) -> None:
    if expected is None:  # the standard tags are fine
        assert parse_sweep(text).repeats == 2
        return
    assert expected in str(error_of(text))


def test_a_long_list_without_aliases_is_named_as_such() -> None:
    err = error_of("name: x\nmodels: [{preset: small}]\nseed: [" + ", ".join(["1"] * 100_001) + "]\n")
    assert "more than 100,000 values; a sweep has a few hundred" in str(err)


def test_sixteen_levels_are_read_and_validated() -> None:
    text = "name: x\nmodels: [{preset: small}]\nseed: " + "[" * 15 + "]" * 15 + "\n"
    err = error_of(text)  # the top mapping and 15 lists: read, then refused as no seed
    assert err.key == "seed[0]" and "nested" not in str(err)


@pytest.mark.parametrize("make, expected", [
    (lambda p: p.write_bytes(b"name: x\n" + b"#" * 2**20), "bytes, more than the 1,048,576 bytes"),
    (lambda p: p.write_bytes(b"name: \xff\n"), "not UTF-8 text (byte 0xff at offset 6)"),
    (lambda p: p.mkdir(), "is a directory"),
    (lambda p: __import__("os").mkfifo(p), "is not a regular file"),
])
def test_only_a_small_regular_utf8_file_is_read(make: Callable[[Path], object], expected: str,
                                                tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    make(path)
    with pytest.raises(SweepError, match="s.yaml: ") as info:
        load_sweep(path)
    assert expected in str(info.value)


def test_values_in_messages_are_cut_and_escaped() -> None:
    from moecluster.head.sweep.shown import clip, shown

    assert shown("a" * 1000) == "'" + "a" * 79 + "… (a string of 1,000 chars)"
    assert clip("x\n\x1b[2J\u202e") == "x\\n\\x1b[2J\\u202e"
    assert shown(10**5000) == "an integer of 16,610 bits"
    err = error_of("name: x\nmodels: [{preset: small}]\naccelerator_type: " + "A" * 10**5 + "\n")
    assert len(str(err)) < 200 and "(a string of 100,000 chars)" in str(err)


def test_set_values_are_read_with_the_same_checks() -> None:
    from moecluster.head.sweep.loader import load_value

    assert load_value("[1, 2]", "seed") == [1, 2]
    with pytest.raises(SweepError, match=r"^--set: seed: tag !!python/name:os.system is not allowed"):
        load_value("!!python/name:os.system", "seed")
    with pytest.raises(SweepError, match=r"^--set: seed: nested more than 16"):
        load_value("[" * 30 + "]" * 30, "seed")


@pytest.mark.parametrize("key, value, bound", [
    ("batch_size", 2**31, "2,147,483,647"), ("seed", 2**63, "9,223,372,036,854,775,807"),
    ("zipf_s", 100.5, "100"), ("duration_s", 86400.5, "86,400"), ("repeats", 2**31, "2,147,483,647"),
])
def test_numbers_past_their_bound_name_it_and_why(key: str, value: object, bound: str) -> None:
    from moecluster.head.sweep.bounds import BOUND_REASONS, DEFAULT_REASON

    err = error_of(f"name: x\nmodels: [{{preset: small}}]\n{key}: {value}\n")
    assert f"{key}: {value} is more than {bound}, the most it may be" in str(err)
    assert BOUND_REASONS.get(key, DEFAULT_REASON) in str(err)
