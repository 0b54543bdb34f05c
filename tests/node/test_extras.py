"""Optional dependencies: a missing one is named with the extra that installs it; a broken one is not renamed."""
from __future__ import annotations

import sys

import pytest

from moecluster.spec.extras import EXTRAS, MissingExtra, require, require_ray_dashboard


def test_missing_module_names_the_feature_and_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if not installed
    with pytest.raises(MissingExtra) as err:
        require("pyarrow", extra="report", feature="--format parquet")
    assert str(err.value) == ("--format parquet needs pyarrow (not installed): pip install 'moecluster[report]'"
                              " (the 'report' extra: pyarrow, matplotlib)")
    assert "\n" not in str(err.value)


def test_submodule_of_a_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m.startswith("grafana_foundation_sdk.")]:
        monkeypatch.delitem(sys.modules, name)  # imported by other tests: forget them for this one
    monkeypatch.setitem(sys.modules, "grafana_foundation_sdk", None)
    with pytest.raises(MissingExtra, match=r"needs grafana_foundation_sdk .*moecluster\[grafana\]"):
        require("grafana_foundation_sdk.builders.dashboard", extra="grafana", feature="dashboards")


def test_an_installed_module_with_a_missing_dependency_keeps_its_own_error(monkeypatch: pytest.MonkeyPatch,
                                                                           tmp_path) -> None:
    (tmp_path / "moecluster_test_broken.py").write_text("import moecluster_test_dep\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sys.modules, "moecluster_test_dep", None)
    with pytest.raises(ModuleNotFoundError) as err:
        require("moecluster_test_broken", extra="llm", feature="x")
    assert not isinstance(err.value, MissingExtra) and err.value.name == "moecluster_test_dep"


def test_unknown_extra_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown extra"):
        require("json", extra="nope", feature="x")


def test_every_extra_is_declared_and_the_tests_install_them_all() -> None:
    from importlib import metadata

    meta = metadata.metadata("moecluster")
    assert set(EXTRAS) <= set(meta.get_all("Provides-Extra") or [])
    test_reqs = [r for r in meta.get_all("Requires-Dist") or [] if r.replace('"', "'").endswith("extra == 'test'")]
    (own,) = [r for r in test_reqs if r.startswith("moecluster[")]
    assert set(own[len("moecluster["):own.index("]")].split(",")) == set(EXTRAS)
    assert meta["License-Expression"] == "Apache-2.0"


def test_ray_dashboard_check(monkeypatch: pytest.MonkeyPatch) -> None:
    require_ray_dashboard()  # the test extra installs ray[default]
    monkeypatch.setitem(sys.modules, "ray.dashboard.optional_deps", None)
    with pytest.raises(MissingExtra, match=r"moecluster\[dashboard\].*ray\[default\]"):
        require_ray_dashboard()
