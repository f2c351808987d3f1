"""Every whole workflow the documentation shows (a ```yaml block that starts with
``version: 1``) passes ``medi2i validate``: a reader who copies one gets a workflow that
runs, not a schema error."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from medi2i.cli.main import build_cli
from medi2i.plugins import load_plugins

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = sorted(
    [
        ROOT / "README.md",
        ROOT / "workflows" / "README.md",
        *ROOT.glob("docs/*.md"),
        *ROOT.glob("plugins/*/README.md"),
    ]
)


def documented_workflows() -> list[tuple[str, str]]:
    found = []
    for document in DOCUMENTS:
        blocks = re.findall(r"```yaml\n(.*?)```", document.read_text(), re.S)
        for index, block in enumerate(blocks):
            if block.startswith("version: 1"):
                found.append((f"{document.relative_to(ROOT)}#{index}", block))
    return found


WORKFLOWS = documented_workflows()


def test_the_documents_show_workflows() -> None:
    assert len(WORKFLOWS) >= 5


@pytest.mark.parametrize(("where", "text"), WORKFLOWS, ids=[w for w, _ in WORKFLOWS])
def test_a_documented_workflow_is_valid(where: str, text: str, tmp_path: Path) -> None:
    workflow = tmp_path / "workflow.yaml"
    workflow.write_text(text)
    result = CliRunner().invoke(build_cli(load_plugins()), ["validate", str(workflow)])
    assert result.exit_code == 0, f"{where}: {result.output}"
