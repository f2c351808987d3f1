"""The workflow log counts cases in words that agree with the count."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from medi2i.cli.main import build_cli
from medi2i.workflow.demo_data import write_demo_cases


@pytest.mark.parametrize(
    ("test", "said"), [(["demo001"], "1 case with"), (["demo000", "demo001"], "2 cases with")]
)
def test_the_evaluate_line_says_case_for_one_case(
    tmp_path: Path, test: list[str], said: str
) -> None:
    write_demo_cases(tmp_path / "data", count=3, shape=(16, 16, 16))
    workflow = {
        "version": 1,
        "data": {
            "kind": "paired",
            "layout": {"type": "synthrad", "root": "data", "source": "mr", "target": "mr"},
            "split": {"test": test},
        },
        "method": {"id": "intensity-inversion"},
        "inference": {"device": "cpu", "progress": False},
        "evaluation": {"split": "test", "metrics": ["psnr"], "mask": None},
        "report": {"enabled": False},
        "output": {"root": "runs", "run_id": "one"},
    }
    (tmp_path / "w.yaml").write_text(yaml.safe_dump(workflow))
    result = CliRunner().invoke(build_cli(), ["run", str(tmp_path / "w.yaml")])
    assert result.exit_code == 0, result.output
    assert f"evaluate: {said} psnr" in result.output
