"""Domains and conditions: the condition picks the direction, the domains decide
preprocessing, postprocessing and the output spec, reach training volumes, the model
folder and DICOM output, and are validated (known names, file-safe names, DICOM
modality codes, the input modality each direction expects).
"""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import pytest

from medi2i import DataKind, DomainSpec
from medi2i.data.cases import IMAGE, Case, CaseSet
from medi2i.errors import OptionsError
from medi2i.io import write_volume
from medi2i.model_folder import load_model, read_manifest, save_model
from medi2i.prediction import predict, predict_outputs
from medi2i.training.data import load_training_volume
from tests.contract_v2_methods import DOMAINS, QUIET, TwoWay, image, registry_with


def test_domains_decide_input_and_output_processing_and_the_output_spec() -> None:
    method = TwoWay()
    method.use_domains(DOMAINS)
    to_ct = predict_outputs(method, image(), settings=QUIET, condition={"to": "ct"})[""]
    assert method.seen == [("pre", "mr"), ("post", "ct")]
    assert to_ct.meta["medi2i.output.modality"] == "CT"
    method.seen.clear()
    ct = image(np.linspace(-1000, 1000, 512).reshape(8, 8, 8))  # CT in HU: holds air
    to_mr = predict_outputs(method, ct, settings=QUIET, condition={"to": "mr"})[""]
    assert method.seen == [("pre", "ct"), ("post", "mr")]
    assert to_mr.meta["medi2i.output.modality"] == "MR"
    assert to_mr.meta["medi2i.output.units"] == "arbitrary"


def test_a_condition_naming_an_unknown_domain_is_refused_with_the_known_ones() -> None:
    method = TwoWay()
    method.use_domains(DOMAINS)
    with pytest.raises(OptionsError, match=r"no domain 'pet'.*\['ct', 'mr'\]"):
        method.parse_condition({"to": "pet"})


def test_unpaired_methods_need_exactly_two_domains() -> None:
    with pytest.raises(OptionsError, match="exactly two"):
        TwoWay().use_domains(["a", "b", "c"])


def test_training_volumes_are_preprocessed_with_their_domain(tmp_path: Path) -> None:
    method = TwoWay()
    method.use_domains(DOMAINS)
    path = tmp_path / "ct.nii.gz"
    values = np.full((8, 8, 8), 1000.0)
    values[:4] = 0.0  # not constant: a constant training volume is refused
    write_volume(image(values), path)
    loaded = load_training_volume(
        Case("ct/1", {IMAGE: path}, "ct"),
        method=method,
        kind=DataKind.UNPAIRED,
        domain=0,
        patch_size=(4, 4, 4),
        foreground_threshold=None,
        domain_name="ct",
    )
    assert method.seen == [("pre", "ct")]
    assert float(loaded.input.max()) == pytest.approx(1.0)


def test_domains_are_stored_in_the_model_folder(tmp_path: Path) -> None:
    registry = registry_with(TwoWay)
    method = TwoWay()
    method.use_domains(DOMAINS)
    folder = save_model(method, tmp_path / "model")
    assert [d.name for d in read_manifest(folder).domains] == ["ct", "mr"]
    loaded = load_model(folder, registry=registry)
    assert loaded.domains == DOMAINS


def test_a_two_way_model_writes_a_ct_direction_as_ct_dicom_and_the_other_as_mr(
    tmp_path: Path,
) -> None:
    import pydicom

    registry = registry_with(TwoWay)
    method = TwoWay()
    method.use_domains(DOMAINS)
    model = save_model(method, tmp_path / "model")
    for to, modality, low in (("ct", "CT", 0), ("mr", "MR", -1000)):  # from MR; CT in HU
        source = tmp_path / f"in-{to}.nii.gz"
        write_volume(image(np.linspace(low, 500, 512).reshape(8, 8, 8)), source)
        out = tmp_path / f"to-{to}"
        predict(source, out, model=model, settings=QUIET, condition={"to": to}, registry=registry)
        first = pydicom.dcmread(sorted(out.glob("*.dcm"))[0])
        assert first.Modality == modality
        record = json.loads((tmp_path / f"to-{to}.provenance.json").read_text())
        assert record["condition"] == {"to": to}
        assert [d["name"] for d in record["domains"]] == ["ct", "mr"]


def test_cases_keep_the_declared_domain_specs() -> None:
    cases = CaseSet(DataKind.UNPAIRED, (), ("ct", "mr"), DOMAINS)
    assert cases.specs() == DOMAINS
    assert CaseSet(DataKind.UNPAIRED, (), ("a", "b")).specs()[1] == DomainSpec(name="b")


def test_the_input_modality_of_a_two_way_model_follows_the_direction() -> None:
    from medi2i.dicom.source import META_KEY
    from medi2i.errors import InputError

    method = TwoWay()
    method.use_domains(DOMAINS)
    ct_series = image()
    ct_series.meta[META_KEY] = types.SimpleNamespace(modality="CT")
    predict_outputs(method, ct_series, settings=QUIET, condition={"to": "mr"})  # CT in: fine
    with pytest.raises(InputError, match="the series is CT"):
        predict_outputs(method, ct_series, settings=QUIET, condition={"to": "ct"})


def test_a_model_whose_domains_are_all_mr_refuses_a_ct_series_without_a_source_domain() -> None:
    # a StarGAN of MR scanners translated a CT series when no source_domain was named
    from medi2i.dicom.source import META_KEY
    from medi2i.errors import InputError
    from medi2i.prediction_checks import check_modality
    from medi2i.testing.domain_cases import MULTI_DOMAINS
    from medi2i.testing.multi_domain_example import ExampleStar

    method = ExampleStar()
    method.use_domains([DomainSpec(name=d.name, modality="MR") for d in MULTI_DOMAINS])
    series = image()
    series.meta[META_KEY] = types.SimpleNamespace(modality="CT")
    with pytest.raises(InputError, match="the series is CT, but 'example-star' takes MR"):
        check_modality(method, series)
    check_modality(method, series, force=True)
    series.meta[META_KEY] = types.SimpleNamespace(modality="MR")
    check_modality(method, series)


def test_domain_modalities_are_dicom_codes_and_names_are_file_safe() -> None:
    from pydantic import ValidationError

    assert DomainSpec(name="ct", modality="ct").modality == "CT"
    assert DomainSpec(name="x", modality=" Any ").modality == "any"
    assert DomainSpec(name="Site A").name == "Site A"
    with pytest.raises(ValidationError, match="did you mean 'MR'"):
        DomainSpec(name="mr", modality="MRI")
    with pytest.raises(ValidationError, match="'XX' is not a DICOM Modality code"):
        DomainSpec(name="x", modality="XX")
    for bad in ("../ct", "", " a", "a/b"):
        with pytest.raises(ValidationError, match="domain name"):
            DomainSpec(name=bad)


def test_volume_specs_compare_modalities_as_dicom_codes() -> None:
    """A plugin's ``VolumeSpec(modality="mr")`` matches an MR series, and a name no DICOM
    series carries is refused where it is written, not at the first DICOM input."""
    from pydantic import ValidationError

    from medi2i.method_spec import VolumeSpec

    assert VolumeSpec(modality=" mr ").modality == "MR"
    assert VolumeSpec(modality="").modality == "any"
    with pytest.raises(ValidationError, match="did you mean 'PT'"):
        VolumeSpec(modality="PET")


def test_a_case_of_an_undeclared_domain_is_named_with_its_file(tmp_path: Path) -> None:
    from medi2i.errors import InputError
    from medi2i.training.data import domain_labels

    path = tmp_path / "D" / "s8.nii.gz"
    cases = CaseSet(DataKind.UNPAIRED, (Case("D/s8", {IMAGE: path}, "D"),), ("ct", "mr"), DOMAINS)
    with pytest.raises(InputError, match=r"case 'D/s8' \(.*s8\.nii\.gz\) has domain 'D'"):
        domain_labels(cases)
