"""Per-volume state and adaptation: state changed while predicting is restored after
each volume; ``adapt`` writes a new model naming its source, never over an input or
the source, and a workflow adapts its model before evaluating it.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from medi2i.errors import OptionsError
from medi2i.io import write_volume
from medi2i.model_folder import read_manifest, save_model
from medi2i.prediction import predict_outputs
from tests.contract_v2_methods import QUIET, Sampler, SelfAdapting, image, registry_with


def varying(mean: float) -> np.ndarray:
    """An 8³ volume of this mean that is not constant (a constant volume is refused)."""
    return mean + np.resize([-1.0, 1.0], (8, 8, 8))  # exact: the mean stays the mean


def test_state_changed_while_predicting_is_restored_after_each_volume() -> None:
    method = SelfAdapting()
    first = predict_outputs(method, image(), settings=QUIET)[""]
    second = predict_outputs(method, image(), settings=QUIET)[""]
    assert torch.equal(first.as_tensor(), second.as_tensor())
    assert method.offset == 0.0


def test_adapt_writes_a_new_model_naming_its_source(tmp_path: Path) -> None:
    from medi2i.adaptation import adapt_model

    registry = registry_with(SelfAdapting)
    source = save_model(SelfAdapting(), tmp_path / "model")
    target = tmp_path / "target.nii.gz"
    write_volume(image(varying(7.0)), target)
    adapted = adapt_model(source, [target], tmp_path / "adapted", registry=registry)
    manifest = read_manifest(adapted)
    assert manifest.state == {"offset": 7.0}
    assert manifest.adapted_from is not None
    assert manifest.adapted_from.model == str(source.resolve())
    assert [volume.path for volume in manifest.adapted_from.data] == [str(target.resolve())]
    assert read_manifest(source).state == {"offset": 0.0}  # the source is left alone
    with pytest.raises(OptionsError, match="replace its source"):
        adapt_model(source, [target], source, registry=registry)
    # a domain for a model trained on none was ignored without a word
    with pytest.raises(OptionsError, match=r"trained on no domains\); leave --domain out"):
        adapt_model(source, [target], tmp_path / "other", registry=registry, domain="B")
    assert not (tmp_path / "other").exists()


def test_a_method_that_does_not_adapt_is_refused(tmp_path: Path) -> None:
    from medi2i.adaptation import adapt_model

    registry = registry_with(Sampler)
    source = save_model(Sampler(), tmp_path / "model")
    with pytest.raises(OptionsError, match="does not adapt"):
        adapt_model(source, [tmp_path / "x.nii.gz"], tmp_path / "out", registry=registry)


def test_a_workflow_adapts_its_model_before_evaluating_it(tmp_path: Path) -> None:
    from medi2i.workflow.demo_data import write_demo_cases
    from medi2i.workflow.runner import run_workflow
    from medi2i.workflow.schema import Workflow

    write_demo_cases(tmp_path / "cases", count=2, shape=(8, 8, 8))
    write_volume(image(varying(3.0)), tmp_path / "site-b" / "1.nii.gz")
    write_volume(image(varying(5.0)), tmp_path / "site-b" / "2.nii.gz")
    workflow = Workflow.model_validate(
        {
            "data": {
                "kind": "paired",
                "layout": {"type": "synthrad", "root": str(tmp_path / "cases")},
                "split": {"test": ["demo001"]},
            },
            "method": {"id": "self-adapting"},
            "adaptation": {
                "data": {"type": "folders", "folders": {"image": str(tmp_path / "site-b")}}
            },
            "evaluation": {"metrics": ["mae"], "mask": None},
            "inference": {"device": "cpu", "progress": False},
            "report": {"enabled": False},
            "output": {"root": str(tmp_path / "runs"), "run_id": "adapted"},
        }
    )
    result = run_workflow(workflow, registry=registry_with(SelfAdapting))
    assert result.model_dir == tmp_path / "runs" / "run-adapted" / "adapted"
    manifest = read_manifest(result.model_dir)
    assert manifest.state == {"offset": 4.0}
    assert manifest.adapted_from is not None
    assert Path(manifest.adapted_from.model).name == "model"
    state = json.loads((tmp_path / "runs" / "run-adapted" / "run.json").read_text())
    assert set(state["stages"]) >= {"train", "adapt", "evaluate"}
    assert state["model"] == "adapted"
    # target data that holds nothing is refused before training, naming the section
    from medi2i.workflow.checks import check_adaptation
    from medi2i.workflow.loader import WorkflowError

    (tmp_path / "empty").mkdir()
    empty = workflow.model_copy(
        update={
            "adaptation": workflow.adaptation.model_copy(  # type: ignore[union-attr]
                update={"include": ["nobody*"]}
            )
        }
    )
    with pytest.raises(
        WorkflowError, match=r"adaptation\.data: adaptation\.include \['nobody\*'\] matches none"
    ):
        check_adaptation(empty)
    check_adaptation(workflow)


def test_an_adapted_model_never_replaces_an_input_even_with_overwrite(tmp_path: Path) -> None:
    from medi2i.adaptation import adapt_model
    from medi2i.errors import OutputError

    registry = registry_with(SelfAdapting)
    source = save_model(SelfAdapting(), tmp_path / "model")
    series = tmp_path / "site-b"
    write_volume(image(varying(7.0)), series / "1.nii.gz")
    before = (series / "1.nii.gz").read_bytes()
    for output in (series / "1.nii.gz", series, tmp_path):  # is an input, or holds one
        with pytest.raises(OutputError):
            adapt_model(source, [series / "1.nii.gz"], output, registry=registry, overwrite=True)
    assert (series / "1.nii.gz").read_bytes() == before
    assert read_manifest(source).state == {"offset": 0.0}


@pytest.mark.parametrize(
    ("values", "problem"),
    [(np.full((8, 8, 8), np.nan), "NaN"), (np.full((8, 8, 8), 7.0), "constant")],
)
def test_a_target_volume_is_checked_as_a_prediction_input_is(
    values: np.ndarray, problem: str, tmp_path: Path
) -> None:
    """adapt used to fit NaN or zero-variance statistics from such volumes and save them."""
    from medi2i.adaptation import adapt_model
    from medi2i.errors import InputError

    registry = registry_with(SelfAdapting)
    source = save_model(SelfAdapting(), tmp_path / "model")
    target = tmp_path / "target.nii.gz"
    nib.save(nib.Nifti1Image(values.astype(np.float32), np.eye(4)), target)  # medi2i won't
    with pytest.raises(InputError, match=problem):
        adapt_model(source, [target], tmp_path / "adapted", registry=registry)
    assert not (tmp_path / "adapted").exists()


def test_an_adaptation_section_for_a_method_that_does_not_adapt_is_refused(
    tmp_path: Path,
) -> None:
    # it passed validate and failed after the whole training, at the adapt stage
    import yaml

    from medi2i.registry import Registry
    from medi2i.workflow.demo_data import write_demo_cases
    from medi2i.workflow.loader import WorkflowError, load_workflow

    write_demo_cases(tmp_path / "cases", count=2, shape=(8, 8, 8))
    (tmp_path / "site").mkdir()  # not the workflow's folder, which holds its run folders
    raw = {
        "data": {"kind": "paired", "layout": {"type": "synthrad", "root": str(tmp_path / "cases")}},
        "method": {"id": "zscore"},
        "adaptation": {"data": {"type": "folders", "folders": {"image": str(tmp_path / "site")}}},
    }
    (tmp_path / "w.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(WorkflowError, match=r"adaptation: method 'zscore' does not adapt"):
        load_workflow(tmp_path / "w.yaml", registry=Registry())


def _carded_source(tmp_path: Path) -> Path:
    """A saved self-adapting model with a card naming no data card, and test metrics."""
    from medi2i.cards import IntendedUse, MethodReference, ModelCard, RunProvenance
    from medi2i.model_card_files import attach_card

    source = save_model(SelfAdapting(), tmp_path / "model")
    card = ModelCard(
        card="model",
        name="site-a",
        method=MethodReference(id=SelfAdapting.id, version=SelfAdapting.version),
        summary="Trained on site A.",
        training_data=[],
        provenance=RunProvenance(medi2i_version="0.1.0", created="2026-01-01", command="x"),
        metrics={"mae_hu": 12.5},
        intended_use=IntendedUse(primary="research", out_of_scope="clinical use"),
        limits=["site A only"],
    )
    attach_card(source, card)
    return source


def test_an_adapted_model_keeps_its_sources_card_with_the_adaptation(tmp_path: Path) -> None:
    """The adapted model used to get the "no card was written" README and fail
    ``medi2i cards check``, though its source had a card."""
    from medi2i.adaptation import adapt_model
    from medi2i.card_checks import check_model_card
    from medi2i.cards import ModelCard, load_card
    from medi2i.hashing import file_sha256

    registry = registry_with(SelfAdapting)
    source = _carded_source(tmp_path)
    target = tmp_path / "target.nii.gz"
    write_volume(image(varying(7.0)), target)
    adapted = adapt_model(source, [target], tmp_path / "adapted", registry=registry, seed=3)

    (tmp_path / "cards").mkdir()
    assert check_model_card(adapted, data_cards=tmp_path / "cards") == []
    card = load_card(adapted / "card.yaml")
    assert isinstance(card, ModelCard)
    assert card.metrics == {}  # measured on the source, before adapting
    assert card.limits[0] == "site A only"
    assert "mae_hu 12.5" in card.limits[1]
    assert "before it was adapted" in card.limits[1]
    (adaptation,) = card.adaptations
    assert adaptation.source_card == "site-a"
    assert adaptation.source_model == str(source.resolve())
    assert adaptation.seed == 3
    assert [(v.path, v.sha256) for v in adaptation.data] == [
        (str(target.resolve()), file_sha256(target))
    ]
    readme = (adapted / "README.md").read_text()
    assert "No card was written" not in readme
    assert "## Adaptation" in readme
    assert "site A only" in readme


def test_adaptation_records_resolved_paths_hashes_and_the_chain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Paths were recorded as typed (relative), volumes without hashes, and a model
    adapted twice named only its direct parent."""
    from medi2i.adaptation import adapt_model
    from medi2i.hashing import file_sha256

    registry = registry_with(SelfAdapting)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "work").mkdir()
    save_model(SelfAdapting(), tmp_path / "model")
    write_volume(image(varying(7.0)), tmp_path / "b.nii.gz")
    write_volume(image(varying(5.0)), tmp_path / "c.nii.gz")
    first = adapt_model(Path("work/../model"), [Path("b.nii.gz")], "first", registry=registry)
    second = adapt_model(first, [Path("c.nii.gz")], "second", registry=registry)

    record = read_manifest(second).adapted_from
    assert record is not None
    assert record.adapted_from is not None
    assert record.model == str(tmp_path / "first")
    assert record.data[0].path == str(tmp_path / "c.nii.gz")
    assert (record.data[0].sha256, record.data[0].hashed) == (
        file_sha256(tmp_path / "c.nii.gz"),
        "file",
    )
    parent = record.adapted_from
    assert parent.model == str(tmp_path / "model")  # "work/.." resolved
    assert parent.data[0].sha256 == file_sha256(tmp_path / "b.nii.gz")
    assert parent.adapted_from is None


def test_a_manifest_of_an_older_adapted_model_still_reads(tmp_path: Path) -> None:
    from medi2i.model_folder import ModelManifest

    folder = save_model(SelfAdapting(), tmp_path / "model")
    raw = json.loads((folder / "medi2i-model.json").read_text())
    raw["adapted_from"] = {"model": "m", "weights_sha256": None, "data": ["a.nii.gz"]}
    record = ModelManifest.model_validate(raw).adapted_from
    assert record is not None
    assert (record.data[0].path, record.data[0].sha256) == ("a.nii.gz", None)


def test_the_adapt_command_offers_no_option_it_would_ignore() -> None:
    """--roi-size, --overlap, --blend, --mirror-axes and --sw-batch-size were accepted
    and ignored (the method adapts with the model's own windows)."""
    from click.testing import CliRunner

    from medi2i.cli.main import build_cli
    from medi2i.plugins import load_plugins

    cli = build_cli(load_plugins())
    shown = CliRunner().invoke(cli, ["adapt", "--help"]).output
    for ignored in ("--roi-size", "--overlap", "--blend", "--mirror-axes", "--sw-batch-size"):
        assert ignored not in shown
        result = CliRunner().invoke(cli, ["adapt", "--model", "m", "out", "v", ignored, "1"])
        assert result.exit_code == 2
        assert "No such option" in result.output
    assert "--device" in shown
    assert "--seed" in shown


def test_a_workflow_given_a_model_checks_its_evaluation_before_adapting(
    tmp_path: Path,
) -> None:
    """With method.model and an adaptation section, an evaluation with no cases used to
    fail only after the adapt stage had run."""
    from medi2i.workflow.demo_data import write_demo_cases
    from medi2i.workflow.loader import WorkflowError
    from medi2i.workflow.runner import run_workflow
    from medi2i.workflow.schema import Workflow

    write_demo_cases(tmp_path / "cases", count=2, shape=(8, 8, 8))
    write_volume(image(varying(3.0)), tmp_path / "site-b" / "1.nii.gz")
    source = save_model(SelfAdapting(), tmp_path / "model")
    workflow = Workflow.model_validate(
        {
            "data": {
                "kind": "paired",
                "layout": {"type": "synthrad", "root": str(tmp_path / "cases")},
            },
            "method": {"model": str(source)},
            "adaptation": {
                "data": {"type": "folders", "folders": {"image": str(tmp_path / "site-b")}}
            },
            "evaluation": {"metrics": ["mae"], "mask": None},
            "inference": {"device": "cpu", "progress": False},
            "report": {"enabled": False},
            "output": {"root": str(tmp_path / "runs"), "run_id": "adapted"},
        }
    )
    with pytest.raises(WorkflowError, match="the test split has no cases to evaluate"):
        run_workflow(workflow, registry=registry_with(SelfAdapting))
    assert not (tmp_path / "runs" / "run-adapted" / "adapted").exists()
