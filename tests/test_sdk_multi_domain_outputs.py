"""What a multi-domain plugin author is given: the guide's ``outputs()`` recipe is
:class:`medi2i.TargetDomainOutputs`', the contract check refuses an output of a
``DomainIntensities`` method that names no domain, the toy-data helpers take plain
domain names, and the multi-domain template writes a harmonization in the target
domain's units.
"""

from __future__ import annotations

import importlib
import re
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from medi2i.cli.main import Medi2iGroup
from medi2i.cli.plugin_commands import register
from medi2i.io import read_volume
from medi2i.method import Output
from medi2i.multi_domain import TargetDomain
from medi2i.prediction import predict_tensor
from medi2i.settings import InferenceSettings
from medi2i.testing import (
    MULTI_DOMAINS,
    check_method_contract,
    check_training_contract,
    train_briefly,
    write_multi_domain_cases,
)
from medi2i.testing.multi_domain_example import ExampleStar

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "writing-a-method.md"
SMALL = {"hidden": 4}
QUIET = InferenceSettings(device="cpu", amp=False, progress=False)


def guide_outputs_recipe() -> dict[str, Any]:
    """The functions of the guide's block that defines ``outputs`` for ``TargetDomain``."""
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.DOTALL)
    [code] = [b for b in blocks if "def outputs(self, condition: TargetDomain)" in b]
    namespace: dict[str, Any] = {"TargetDomain": TargetDomain, "Output": Output}
    exec(
        compile("from __future__ import annotations\n" + textwrap.dedent(code), "guide", "exec"),
        namespace,
    )
    return {
        k: v for k, v in namespace.items() if callable(v) and k not in ("TargetDomain", "Output")
    }


def described(outputs: tuple[Output, ...]) -> list[tuple[str, str | None, dict[str, object]]]:
    return [(o.name, o.domain, dict(o.condition)) for o in outputs]


@pytest.mark.parametrize("target", [None, "scanner-b"])
def test_the_guide_s_outputs_recipe_is_target_domain_outputs(target: str | None) -> None:
    GuideStar = type("GuideStar", (ExampleStar,), guide_outputs_recipe())
    guide, mixin = GuideStar(SMALL), ExampleStar(SMALL)
    guide.use_domains(MULTI_DOMAINS)
    mixin.use_domains(MULTI_DOMAINS)
    condition = TargetDomain(target_domain=target)

    assert described(guide.outputs(condition)) == described(mixin.outputs(condition))


class DomainlessStar(ExampleStar):
    """The guide's old recipe: one target's output names no domain."""

    def outputs(self, condition: TargetDomain) -> tuple[Output, ...]:
        if condition.target_domain is not None:
            return (Output("", self.domain(condition.target_domain).volume_spec()),)
        return super().outputs(condition)


def test_the_contract_refuses_an_output_without_its_domain() -> None:
    check_method_contract(DomainlessStar, options=SMALL)  # every domain: each named

    with pytest.raises(AssertionError, match=r"declares its output without a domain.*domain="):
        check_method_contract(
            DomainlessStar, options=SMALL, condition={"target_domain": "scanner-b"}
        )


def test_the_toy_data_helpers_take_plain_domain_names(tmp_path: Path) -> None:
    cases = write_multi_domain_cases(tmp_path / "cases", domains=["s1", "s2"], per_domain=1)

    assert cases.domains == ("s1", "s2")
    assert [spec.modality for spec in cases.domain_specs] == ["any", "any"]
    check_training_contract(
        ExampleStar, tmp_path / "contract", options=SMALL, domains=["s1", "s2"], steps=2
    )


@pytest.fixture
def template_star(tmp_path: Path) -> Iterator[Any]:
    """The method class of a plugin made from the multi-domain template (not installed)."""
    group = Medi2iGroup("medi2i")
    register(group)
    folder = tmp_path / "medi2i-tpl-star"
    arguments = ["plugin", "new", "tpl-star", "--kind", "multi-domain", "--output", str(folder)]
    result = CliRunner().invoke(group, arguments)
    assert result.exit_code == 0, result.output
    sys.path.insert(0, str(folder / "src"))
    try:
        yield importlib.import_module("medi2i_tpl_star.method").TplStar
    finally:
        sys.path.remove(str(folder / "src"))
        for name in [n for n in sys.modules if n.startswith("medi2i_tpl_star")]:
            del sys.modules[name]


def test_the_multi_domain_template_harmonizes_into_the_target_s_units(
    template_star: Any, tmp_path: Path
) -> None:
    method = template_star({"roi_size": (16, 16, 16), "hidden": 4})
    data = train_briefly(method, tmp_path, steps=2)
    volumes = {case.domain: read_volume(case.images["image"]) for case in data.cases}
    low, high = float(volumes["scanner-a"].min()), float(volumes["scanner-a"].max())

    output = predict_tensor(
        method, volumes["scanner-b"], settings=QUIET, condition={"target_domain": "scanner-a"}
    )

    margin = 0.05 * (high - low)
    assert low - margin <= float(output.min()) <= float(output.max()) <= high + margin
