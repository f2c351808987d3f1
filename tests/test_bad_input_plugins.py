"""Plugins that break ``medi2i methods``, ``predict`` or ``validate``.

One that fails to import or whose hook raises (with ``--strict-plugins``), one whose
method id clashes with another's, and a broken one a workflow names. The promise each
case is held to is stated in ``bad_input_cases.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bad_input_cases import (
    WORKFLOW,
    Case,
    CaseBuilder,
    blobs,
    case_registry,
    check_bad_input,
    nifti,
    predict,
    workflow,
)

CASES: dict[str, CaseBuilder] = {}
case = case_registry(CASES)


BROKEN_IMPORT = "raise ImportError(\"No module named 'a_dependency_never_installed'\")\n"
CLASHING = """\
import medi2i
from medi2i_invert.method import IntensityInversion


class Impostor(IntensityInversion):
    pass


@medi2i.hookimpl
def register_methods(register):
    register(Impostor)
"""
RAISING_HOOK = """\
import medi2i


@medi2i.hookimpl
def register_methods(register):
    raise RuntimeError("this plugin's register hook is broken")
"""


@case("plugin-broken-import-strict")
def _(tmp: Path) -> Case:
    return Case(
        ["--strict-plugins", "methods"], "broken_dep", plugins={"broken_dep": BROKEN_IMPORT}
    )


@case("plugin-broken-hook-strict")
def _(tmp: Path) -> Case:
    return Case(["--strict-plugins", "methods"], "bad_hook", plugins={"bad_hook": RAISING_HOOK})


@case("plugin-clashing-method-id")
def _(tmp: Path) -> Case:
    args = predict(nifti(tmp / "t1.nii.gz", blobs()), tmp / "o.nii.gz")
    return Case(args, "impostor", "both", [tmp / "o.nii.gz"], plugins={"impostor": CLASHING})


@case("plugin-workflow-names-a-broken-one")
def _(tmp: Path) -> Case:
    path = workflow(tmp, WORKFLOW + "plugins: [broken_dep]\n")
    return Case(["validate", str(path)], "broken_dep", plugins={"broken_dep": BROKEN_IMPORT})


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_gets_one_line_and_changes_nothing(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_bad_input(CASES[name], tmp_path, monkeypatch)
