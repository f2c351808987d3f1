"""Series of several volumes (echoes, time points) and the slice tolerance on every scan."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from pydicom.uid import generate_uid

from medi2i.cli.main import build_cli
from medi2i.cli.options import series_selector
from medi2i.dicom.reading.series_scan import scan_folder
from medi2i.dicom.reading.series_selection import SeriesSelector, select_series
from medi2i.dicom.reading.series_volume import read_dicom_folder
from medi2i.errors import InputError
from medi2i.testing.dicom_series import write_series

SHAPE = (8, 6, 5)


def write_echoes(folder: Path, attributes: list[dict[str, object]]) -> list[np.ndarray]:
    """One MR series holding a volume per entry of ``attributes``, at the same positions."""
    study, series = generate_uid(), generate_uid()
    rng = np.random.default_rng(0)
    volumes = []
    for number, extra in enumerate(attributes):
        volume = rng.integers(0, 1000, SHAPE).astype(np.float32)
        write_series(
            folder,
            volume,
            spacing=(0.8, 0.9, 2.5),
            origin=(-3.0, 4.0, 10.0),
            modality="MR",
            rescale=(1.0, 0.0),
            description="multi echo",
            study_uid=study,
            series_uid=series,
            instance_numbers=[number * SHAPE[2] + k + 1 for k in range(SHAPE[2])],
            attributes=extra,
        )
        volumes.append(volume)
    return volumes


def test_echoes_are_listed_and_read_one_by_one(tmp_path: Path) -> None:
    volumes = write_echoes(tmp_path, [{"EchoTime": 30.0}, {"EchoTime": 10.0}])
    series = scan_folder(tmp_path).series
    assert [(info.volume.index, info.volume.label) for info in series if info.volume] == [
        (1, "echo 1 (TE 10 ms)"),
        (2, "echo 2 (TE 30 ms)"),
    ]
    assert all(info.is_volume and info.number_of_images == SHAPE[2] for info in series)
    for index, expected in ((1, volumes[1]), (2, volumes[0])):
        image = read_dicom_folder(tmp_path, SeriesSelector(volume=index))
        np.testing.assert_array_equal(image.numpy()[0], expected)
        spacing = np.linalg.norm(image.affine.numpy()[:3, :3], axis=0)
        np.testing.assert_allclose(spacing, (0.8, 0.9, 2.5), atol=1e-6)
        np.testing.assert_allclose(image.affine.numpy()[:3, 3], (3.0, -4.0, 10.0), atol=1e-6)


def test_reading_without_a_volume_lists_the_volumes(tmp_path: Path) -> None:
    write_echoes(tmp_path, [{"EchoTime": 10.0}, {"EchoTime": 30.0}, {"EchoTime": 50.0}])
    with pytest.raises(InputError) as caught:
        read_dicom_folder(tmp_path)
    message = str(caught.value)
    assert "duplicate positions" not in message
    assert "3 volumes" in message
    assert "2: echo 2 (TE 30 ms)" in message
    assert "--volume" in message
    with pytest.raises(InputError, match="no series matches"):
        read_dicom_folder(tmp_path, SeriesSelector(volume=4))


@pytest.mark.parametrize(
    ("attributes", "tag", "label"),
    [
        ([{"EchoNumbers": 1, "EchoTime": 9}, {"EchoNumbers": 2, "EchoTime": 9}], "EchoNumbers",
         "echo 2 (TE 9 ms)"),
        ([{"TemporalPositionIdentifier": 1}, {"TemporalPositionIdentifier": 2}],
         "TemporalPositionIdentifier", "time point 2"),
        ([{"TriggerTime": 0.0}, {"TriggerTime": 400.0}], "TriggerTime",
         "phase 2 (trigger time 400 ms)"),
        ([{"AcquisitionNumber": 1}, {"AcquisitionNumber": 2}], "AcquisitionNumber",
         "acquisition 2"),
        ([{"DiffusionBValue": 0.0}, {"DiffusionBValue": 1000.0}], "DiffusionBValue",
         "b = 1000 s/mm2"),
    ],
)  # fmt: skip
def test_the_tag_that_tells_volumes_apart(
    tmp_path: Path, attributes: list[dict[str, object]], tag: str, label: str
) -> None:
    write_echoes(tmp_path, attributes)
    chosen = select_series(scan_folder(tmp_path).series, SeriesSelector(volume=2))
    assert chosen.volume is not None
    assert (chosen.volume.tag, chosen.volume.label, chosen.volume.count) == (tag, label, 2)


def test_no_tag_that_parts_them_keeps_the_duplicate_problem(tmp_path: Path) -> None:
    write_echoes(tmp_path, [{"EchoTime": 10.0}, {"EchoTime": 10.0}])
    (series,) = scan_folder(tmp_path).series
    assert series.volume is None
    assert "duplicate positions" in str(series.problems[0])


def run_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(build_cli(), list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_ls_lists_and_selects_volumes(tmp_path: Path) -> None:
    write_echoes(tmp_path, [{"EchoTime": 10.0}, {"EchoTime": 30.0}])
    code, output = run_cli("dicom", "ls", str(tmp_path))
    assert code == 0
    assert "multi echo, volume 2/2: echo 2 (TE 30 ms)" in output
    code, output = run_cli("dicom", "ls", str(tmp_path), "--json", "--volume", "2")
    assert code == 0
    document = json.loads(output)
    volumes = [series["volume"] for series in document["studies"][0]["series"]]
    assert [volume["label"] for volume in volumes] == ["echo 1 (TE 10 ms)", "echo 2 (TE 30 ms)"]
    assert document["selected_volume"] == 2
    code, output = run_cli("dicom", "ls", str(tmp_path), "--modality", "MR")
    assert code == 1
    assert "--volume N" in output


def test_ls_slice_tolerance(tmp_path: Path) -> None:
    along = np.array([0.0, 2.1, 3.9, 6.0, 8.0, 10.1])  # positions rounded off a 2 mm grid
    positions = np.stack([np.zeros(6), np.zeros(6), along], axis=1)
    write_series(tmp_path, np.zeros((4, 4, 6), np.float32), spacing=(1, 1, 2), positions=positions)
    _, output = run_cli("dicom", "ls", str(tmp_path), "--json")
    assert json.loads(output)["studies"][0]["series"][0]["is_volume"]
    _, output = run_cli("dicom", "ls", str(tmp_path), "--json", "--slice-tolerance", "0.01")
    (series,) = json.loads(output)["studies"][0]["series"]
    assert not series["is_volume"]
    assert "0.01 mm tolerated" in series["problems"][0]


def test_the_selector_carries_volume_and_tolerance() -> None:
    selector = series_selector(modality=None, largest=False, volume=2, slice_tolerance_mm=0.5)
    assert selector is not None
    assert (selector.volume, selector.slice_tolerance_mm) == (2, 0.5)


def test_discover_studies_scans_with_the_selector_tolerance(tmp_path: Path) -> None:
    from medi2i.study_discovery import discover_studies

    along = np.array([0.0, 2.1, 3.9, 6.0, 8.0, 10.1])
    positions = np.stack([np.zeros(6), np.zeros(6), along], axis=1)
    write_series(tmp_path / "a", np.zeros((4, 4, 6), np.float32), spacing=(1, 1, 2),
                 positions=positions)  # fmt: skip
    (loose,) = discover_studies(tmp_path)
    assert loose.series is not None
    assert loose.series.is_volume
    (strict,) = discover_studies(tmp_path, SeriesSelector(slice_tolerance_mm=0.01))
    assert strict.series is not None
    assert "0.01 mm tolerated" in str(strict.series.problems[0])


def test_predict_picks_a_volume_of_a_series_of_several(tmp_path: Path) -> None:
    import nibabel as nib

    from medi2i.plugins import load_plugins
    from medi2i.testing import example_methods

    volumes = write_echoes(tmp_path / "mr", [{"EchoTime": 30.0}, {"EchoTime": 10.0}])
    plugins = load_plugins()
    plugins.manager.register(example_methods, name="examples")
    args = ["predict", str(tmp_path / "mr"), str(tmp_path / "out.nii.gz")]
    args += ["--method", "intensity-inversion", "--no-progress"]
    unpicked = CliRunner().invoke(build_cli(plugins), args)
    assert unpicked.exit_code == 1
    assert "--volume N" in unpicked.stderr
    picked = CliRunner().invoke(build_cli(plugins), [*args, "--volume", "2"])
    assert picked.exit_code == 0, picked.output
    written = np.asarray(nib.load(str(tmp_path / "out.nii.gz")).dataobj)
    # the inversion is c - x: only the picked volume (echo 2, TE 30 ms) sums to a constant
    assert float(np.std(written + volumes[0])) < 2  # up to the rounding of stored values
    assert float(np.std(written + volumes[1])) > 100
