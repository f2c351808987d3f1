"""The modality checks of predict's input and where a sidecar says the input was.

An input without a stated modality (a NIfTI file) is judged by its values: an MR given
to a method, or a two-way model's direction, that takes CT in HU was translated as if
its 0-247 were HU; the refusal of a CT given to a super-resolution or harmonization
method said it "translates MR"; ``--force-modality --help`` spoke of DICOM only; and
``input.path`` in the provenance was relative to the working directory.
"""

from __future__ import annotations

import json
import re
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner, Result

from medi2i import DomainSpec
from medi2i.cli.main import build_cli
from medi2i.errors import InputError
from medi2i.evaluation.hounsfield_checks import require_hounsfield
from medi2i.io import write_volume
from medi2i.model_folder import save_model
from medi2i.plugins import load_plugins
from medi2i.prediction import predict, predict_outputs
from medi2i.prediction_checks import check_modality, range_without_hounsfield_air
from medi2i.provenance import input_hash, without_source
from medi2i.testing import example_methods
from tests.contract_v2_methods import DOMAINS, QUIET, TwoWay, image, registry_with

MR_VALUES = np.linspace(0.0, 247.0, 512).reshape(8, 8, 8)  # an MR in 0-247, as colin27
CT_VALUES = np.linspace(-1000.0, 1500.0, 512).reshape(8, 8, 8)  # a CT in HU, with air


def two_way() -> TwoWay:
    method = TwoWay()
    method.use_domains(DOMAINS)  # ct (CT, HU) and mr
    return method


def run(*args: str) -> Result:
    plugins = load_plugins()
    plugins.manager.register(example_methods, name="examples")
    return CliRunner().invoke(build_cli(plugins), list(args))


# -- an input taken as CT in HU holds air ------------------------------------------------


def test_an_mr_given_to_the_direction_that_takes_ct_in_hu_is_refused_in_one_line() -> None:
    with pytest.raises(InputError) as refused:
        predict_outputs(two_way(), image(MR_VALUES), settings=QUIET, condition={"to": "mr"})
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(
        "test.nii.gz: no voxel is at or below -500 (its values run from 0 to 247)"
    )
    assert "'two-way-toy' takes CT input in HU (its input domain 'ct'" in message
    assert "pass --force-modality (force_modality=True in Python)" in message


def test_the_direction_that_takes_ct_translates_a_ct_in_hu_and_a_forced_mr() -> None:
    method = two_way()
    predict_outputs(method, image(CT_VALUES), settings=QUIET, condition={"to": "mr"})
    forced = QUIET.model_copy(update={"force_modality": True})
    predict_outputs(method, image(MR_VALUES), settings=forced, condition={"to": "mr"})
    # the other direction takes MR: the MR is its input
    predict_outputs(method, image(MR_VALUES), settings=QUIET, condition={"to": "ct"})


def test_a_ct_stored_with_an_offset_is_refused_by_a_method_that_takes_hu() -> None:
    stored = (CT_VALUES + 1024.0).astype(np.uint16)  # a CT as HU + 1024, all >= 0
    volume = image(stored)
    volume.data = volume.as_tensor().to(torch.int32)  # an integer volume is judged too
    with pytest.raises(InputError, match=r"its values run from 24 to 2524\)"):
        check_modality(two_way(), volume, domain="ct")


def test_domains_that_all_take_ct_in_hu_refuse_an_mr_without_a_source_domain() -> None:
    from medi2i.testing.multi_domain_example import ExampleStar

    method = ExampleStar()
    method.use_domains([DomainSpec(name=n, modality="CT", units="HU") for n in "abc"])
    with pytest.raises(InputError, match=r"'example-star' takes CT input in HU\. Give"):
        check_modality(method, image(MR_VALUES))
    check_modality(method, image(CT_VALUES))


def test_a_ct_series_from_dicom_is_judged_by_its_modality_not_its_values() -> None:
    from medi2i.dicom.source import META_KEY

    series = image(MR_VALUES)  # e.g. a small field of view inside the head
    series.meta[META_KEY] = types.SimpleNamespace(modality="CT")
    check_modality(two_way(), series, domain="ct")


def test_the_refusal_names_the_input_file(tmp_path: Path) -> None:
    registry = registry_with(TwoWay)
    model = save_model(two_way(), tmp_path / "model")
    source = tmp_path / "t1.nii.gz"
    write_volume(image(MR_VALUES), source)
    with pytest.raises(InputError, match=rf"^{re.escape(str(source))}: no voxel is at or"):
        predict(
            source,
            tmp_path / "out.nii.gz",
            model=model,
            settings=QUIET,
            condition={"to": "mr"},
            registry=registry,
        )
    assert not (tmp_path / "out.nii.gz").exists()


# -- the rule shared with evaluate ---------------------------------------------------------


def test_the_air_rule_leaves_out_non_finite_values_and_takes_tensors_and_arrays() -> None:
    mr = MR_VALUES.copy()
    mr[0, 0, 0] = np.nan
    mr[0, 0, 1] = -np.inf
    found = range_without_hounsfield_air(mr)
    assert found is not None
    assert found[0] == pytest.approx(2 * 247 / 511)
    assert found[1] == 247.0
    assert range_without_hounsfield_air(torch.as_tensor(mr, dtype=torch.bfloat16)) is not None
    assert range_without_hounsfield_air(torch.as_tensor(CT_VALUES)) is None
    assert range_without_hounsfield_air(np.full(4, np.nan)) is None  # other checks refuse it
    assert range_without_hounsfield_air(np.zeros(0)) is None


def test_evaluate_reports_the_finite_range_of_a_volume_without_air() -> None:
    values = MR_VALUES.copy()
    values[0, 0, 0] = np.nan  # said "its values run from nan to nan"
    with pytest.raises(InputError, match=r"its values run from 0\.4834 to 247\)"):
        require_hounsfield(values, Path("mr.nii.gz"), ["synthrad_mae"])


# -- the refusal says what the method takes ------------------------------------------------


def test_a_method_that_takes_mr_says_so_rather_than_that_it_translates() -> None:
    method = example_methods.SelfRescaling()  # any MR method: super-resolution, zscore
    with pytest.raises(InputError) as refused:
        check_modality(method, image(CT_VALUES))
    assert "'example-self-rescaling' takes MR input" in str(refused.value)
    assert "translates" not in str(refused.value)


def test_force_modality_help_covers_the_nifti_checks() -> None:
    result = run("predict", "--help")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    start = text.index("--force-modality")
    help_text = text[start : text.index("--seed", start)]
    assert "DICOM series" in help_text
    assert "NIfTI input given as MR" in help_text
    assert "given as CT in HU without a voxel at or below -500" in help_text


# -- the provenance names its input wherever it is read ------------------------------------


def test_the_provenance_records_the_input_path_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "scans").mkdir()
    write_volume(image(MR_VALUES * 2.0 + 100.0), tmp_path / "scans" / "t1.nii.gz")
    monkeypatch.chdir(tmp_path / "scans")
    args = ["--method", "example-self-rescaling", "--no-progress"]
    result = run("predict", "t1.nii.gz", "../out.nii.gz", *args)
    assert result.exit_code == 0, result.output
    sidecar = json.loads((tmp_path / "out.provenance.json").read_text())
    assert sidecar["input"]["path"] == str((tmp_path / "scans" / "t1.nii.gz").resolve())


def test_a_de_identified_input_entry_holds_no_path(tmp_path: Path) -> None:
    source = tmp_path / "patient-7" / "t1.nii.gz"
    source.parent.mkdir()
    write_volume(image(MR_VALUES), source)
    entry = without_source(input_hash(source, None))
    assert isinstance(entry, dict)
    assert entry["path"] is None
    assert "patient-7" not in json.dumps(entry)
