"""Bad workflow files given to ``medi2i validate``.

A missing file, invalid or alias-bombed YAML, a document that is not a mapping,
unknown keys, non-finite or negative numbers, and ``plugins:`` entries that name a
module rather than an installed plugin. The promise each case is held to is stated
in ``bad_input_cases.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bad_input_cases import (
    WORKFLOW,
    Case,
    CaseBuilder,
    case_registry,
    check_bad_input,
    workflow,
)

CASES: dict[str, CaseBuilder] = {}
case = case_registry(CASES)


@case("workflow-missing")
def _(tmp: Path) -> Case:
    return Case(["validate", str(tmp / "absent.yaml")], "absent.yaml")


@case("workflow-nan-learning-rate")
def _(tmp: Path) -> Case:
    text = WORKFLOW.replace("example-pointwise-net", "example-tiny-regression")
    text = "plugins: [medi2i.testing.trainable_examples]\n" + text
    path = workflow(tmp, text + "  options:\n    learning_rate: .nan\n")
    return Case(["validate", str(path)], "method.options.learning_rate", "finite number")


@case("workflow-inf-steps")
def _(tmp: Path) -> Case:
    path = workflow(tmp, WORKFLOW + "training:\n  steps: .inf\n")
    return Case(["validate", str(path)], "steps")


@case("workflow-negative-steps")
def _(tmp: Path) -> Case:
    path = workflow(tmp, WORKFLOW + "training:\n  steps: -3\n")
    return Case(["validate", str(path)], "steps")


@case("workflow-plugin-module")
def _(tmp: Path) -> Case:
    (tmp / "evil_plugin.py").write_text(f"open({str(tmp / 'ran')!r}, 'w').write('x')\n")
    path = workflow(tmp, WORKFLOW + "plugins: [evil_plugin]\n")
    return Case(["validate", str(path)], "evil_plugin", absent=[tmp / "ran"])


@case("workflow-plugin-stdlib-module")
def _(tmp: Path) -> Case:
    path = workflow(tmp, WORKFLOW + "plugins: [antigravity]\n")
    return Case(["validate", str(path)], "antigravity")


@case("workflow-alias-bomb")
def _(tmp: Path) -> Case:
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for index in range(1, 9):
        previous, name = chr(ord("a") + index - 1), chr(ord("a") + index)
        lines.append(f"{name}: &{name} [{','.join([f'*{previous}'] * 9)}]")
    path = workflow(tmp, "\n".join(lines) + "\n")
    return Case(["validate", str(path)], "workflow.yaml", "alias")


@case("workflow-invalid-yaml")
def _(tmp: Path) -> Case:
    path = workflow(tmp, "data: [unclosed\n")
    return Case(["validate", str(path)], "workflow.yaml")


@case("workflow-unknown-key")
def _(tmp: Path) -> Case:
    path = workflow(tmp, WORKFLOW + "trainig:\n  steps: 5\n")
    return Case(["validate", str(path)], "trainig")


@case("workflow-not-a-mapping")
def _(tmp: Path) -> Case:
    path = workflow(tmp, "- just\n- a list\n")
    return Case(["validate", str(path)], "workflow.yaml")


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_gets_one_line_and_changes_nothing(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_bad_input(CASES[name], tmp_path, monkeypatch)
