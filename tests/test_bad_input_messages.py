"""What the one-line message of a hostile input to ``medi2i predict`` says.

The bad-input corpus (``test_bad_input_*.py``) holds every bad input to the promises
they share (one line, the file named, nothing written). Here a few inputs whose first
messages named the wrong cause or left out the fix are held to the cause and the fix:
each test runs the command in process as a user would and reads the line it prints.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner, Result

from medi2i.cli.main import build_cli
from medi2i.plugins import PluginWarning, load_plugins

Run = Callable[..., Result]


@pytest.fixture
def predict(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Run:
    """Run ``medi2i predict SOURCE OUTPUT [OPTIONS]`` in process, in ``tmp_path``."""
    monkeypatch.setenv("MEDI2I_LOAD_PLUGINS", "invert")
    monkeypatch.delenv("MEDI2I_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)

    def run(source: str, output: str, *extra: str) -> Result:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PluginWarning)
            plugins = load_plugins()
        args = ["predict", source, output, "--method", "intensity-inversion", "--no-progress"]
        return CliRunner().invoke(build_cli(plugins), [*args, *extra])

    return run


def error_line(result: Result) -> str:
    """The one line a refused input prints."""
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), lines[0]
    return lines[0]


def nifti(path: Path) -> Path:
    values = np.random.default_rng(0).normal(400.0, 120.0, (16, 14, 12)).astype(np.float32)
    nib.save(nib.Nifti1Image(values, np.eye(4)), str(path))
    return path


# -- outputs -------------------------------------------------------------------------------


def test_a_folder_at_the_sidecar_path_is_named_as_such(predict: Run, tmp_path: Path) -> None:
    nifti(tmp_path / "t1.nii.gz")
    (tmp_path / "out.provenance.json").mkdir()
    (tmp_path / "out.provenance.json" / "notes.txt").write_text("mine")

    for extra in ((), ("--overwrite",)):
        line = error_line(predict("t1.nii.gz", "out.nii.gz", *extra))

        assert "a folder occupies out.provenance.json" in line
        assert "provenance sidecar of out.nii.gz" in line
        assert "move or rename that folder, or choose another output name" in line
        assert "out.provenance.json/out.nii.gz" not in line  # the old, misleading hint
    assert (tmp_path / "out.provenance.json" / "notes.txt").read_text() == "mine"
    assert not (tmp_path / "out.nii.gz").exists()


# -- DICOM ---------------------------------------------------------------------------------


def series(folder: Path, modality: str, **kwargs: object) -> Path:
    from medi2i.testing.dicom_series import write_series

    volume = np.random.default_rng(3).normal(300.0, 80.0, (12, 10, 6)).round().astype(np.float32)
    write_series(folder, volume, modality=modality, rescale=(1.0, 0.0), **kwargs)  # type: ignore[arg-type]
    return folder


def test_a_folder_of_a_ct_and_an_mr_series_suggests_modality(predict: Run, tmp_path: Path) -> None:
    series(tmp_path / "study", "MR", study_uid="1.2.3.4.9", series_number=1)
    series(tmp_path / "study", "CT", study_uid="1.2.3.4.9", series_number=2)

    line = error_line(predict("study", "out.nii.gz"))

    assert line.startswith("Error: study: 2 series match"), line
    assert "--modality CT or --modality MR" in line
    assert not (tmp_path / "out.nii.gz").exists()
    picked = predict("study", "out.nii.gz", "--modality", "MR")  # the hint works
    assert picked.exit_code == 0, picked.output


def test_the_modality_hint_is_left_out_when_it_cannot_tell_series_apart(
    predict: Run, tmp_path: Path
) -> None:
    series(tmp_path / "study", "MR", study_uid="1.2.3.4.9", series_number=1)
    series(tmp_path / "study", "MR", study_uid="1.2.3.4.9", series_number=2)

    line = error_line(predict("study", "out.nii.gz"))

    assert "2 series match" in line
    assert "--modality" not in line


def test_a_rescale_slope_of_0_is_named_not_called_a_constant_volume(
    predict: Run, tmp_path: Path
) -> None:
    import pydicom

    folder = series(tmp_path / "mr", "MR")
    victim = sorted(folder.iterdir())[2]
    dataset = pydicom.dcmread(victim)
    dataset.RescaleSlope = "0"
    dataset.RescaleIntercept = "0"
    dataset.save_as(victim)

    line = error_line(predict("mr", "out.nii.gz"))

    assert f"{victim.name}: invalid RescaleSlope: '0': a slope of 0" in line
    assert "every voxel to one value" in line
    assert "constant" not in line


def test_a_rescale_slope_of_0_in_an_enhanced_file_is_named(predict: Run, tmp_path: Path) -> None:
    import pydicom

    from medi2i.testing.dicom_series import write_enhanced

    volume = np.random.default_rng(3).normal(300.0, 80.0, (12, 10, 6)).round().astype(np.float32)
    path = write_enhanced(tmp_path / "enhanced" / "mr.dcm", volume)
    dataset = pydicom.dcmread(path)
    dataset.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0].RescaleSlope = 0
    dataset.save_as(path)

    line = error_line(predict("enhanced", "out.nii.gz"))

    assert "mr.dcm" in line
    assert "invalid RescaleSlope" in line
    assert "a slope of 0" in line


# -- MetaImage -----------------------------------------------------------------------------


def metaimage(path: Path, key: str, value: str) -> Path:
    """A MetaImage file (``.mhd`` with its ``.raw``, or ``.mha``) whose header's ``key``
    is set to ``value``."""
    import re

    import SimpleITK as sitk

    values = np.random.default_rng(0).normal(400.0, 120.0, (12, 14, 16)).astype(np.float32)
    sitk.WriteImage(sitk.GetImageFromArray(values), str(path))
    header, found = re.subn(rf"^{key} = [^\n]*".encode(), f"{key} = {value}".encode(),
                            path.read_bytes(), count=1, flags=re.MULTILINE)  # fmt: skip
    assert found == 1
    path.write_bytes(header)
    return path


@pytest.mark.parametrize("spacing", ["nan 1 1", "1 inf 1", "1 1 one"])
def test_a_metaimage_spacing_that_is_not_a_number_is_not_called_zero(
    predict: Run, tmp_path: Path, spacing: str
) -> None:
    metaimage(tmp_path / "t1.mhd", "ElementSpacing", spacing)

    line = error_line(predict("t1.mhd", "out.nii.gz"))

    assert line.startswith("Error: t1.mhd: the header's ElementSpacing (the voxel size in mm)")
    assert "is not a finite number" in line
    assert "zero" not in line.lower()


def test_a_metaimage_origin_that_is_not_a_number_is_refused(predict: Run, tmp_path: Path) -> None:
    # MetaIO reads it as 0 without a word: the volume would be placed at the wrong origin
    metaimage(tmp_path / "t1.mha", "Offset", "nan 0 0")

    line = error_line(predict("t1.mha", "out.nii.gz"))

    assert "t1.mha: the header's Offset" in line
    assert "'nan' is not a finite number" in line
    assert not (tmp_path / "out.nii.gz").exists()


# -- what ITK prints -----------------------------------------------------------------------


def test_itk_prints_nothing_beside_the_message(
    predict: Run, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # MetaIO writes its complaints straight to the process's standard error (not to
    # sys.stderr, which the runner captures): capfd sees them, the user would too
    metaimage(tmp_path / "split.mhd", "ElementSpacing", "1 1 1")
    data = tmp_path / "split.raw"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 4])  # truncated
    capfd.readouterr()

    line = error_line(predict("split.mhd", "out.nii.gz"))

    printed = capfd.readouterr()
    assert "MetaImage" not in printed.err + printed.out
    # what MetaIO said is kept, in the one line: it names the real cause
    assert line.startswith("Error: cannot read split.mhd as MetaImage")
    assert "data not read completely" in line


def test_a_missing_data_file_is_named(predict: Run, tmp_path: Path) -> None:
    metaimage(tmp_path / "split.mhd", "ElementSpacing", "1 1 1")
    (tmp_path / "split.raw").unlink()
    line = error_line(predict("split.mhd", "out.nii.gz"))
    assert line.startswith("Error: split.mhd: its voxels are in split.raw (ElementDataFile)")
    assert "missing" in line


def test_a_geometry_key_in_other_letter_case_is_refused(predict: Run, tmp_path: Path) -> None:
    """MetaIO's keys are case-sensitive: it skips ``elementspacing`` and reads 1 mm."""
    header = metaimage(tmp_path / "t1.mhd", "ElementSpacing", "0.9 0.8 2.5")
    header.write_bytes(header.read_bytes().replace(b"ElementSpacing =", b"elementspacing ="))
    line = error_line(predict("t1.mhd", "out.nii.gz"))
    assert "'elementspacing' is not read" in line
    assert "write it as ElementSpacing" in line
    assert not (tmp_path / "out.nii.gz").exists()


def test_words_after_a_geometry_key_s_values_are_left_to_metaio(
    predict: Run, tmp_path: Path
) -> None:
    """MetaIO reads the first NDims² direction values and ignores what follows."""
    metaimage(tmp_path / "t1.mhd", "TransformMatrix", "1 0 0 0 1 0 0 0 1 % identity")
    assert predict("t1.mhd", "out.nii.gz").exit_code == 0


def test_metaimage_data_that_does_not_uncompress_is_refused(
    predict: Run, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # MetaIO says "Uncompress failed" and returns zeros, which were then called constant
    metaimage(tmp_path / "t1.mhd", "CompressedData", "True")
    capfd.readouterr()

    line = error_line(predict("t1.mhd", "out.nii.gz"))

    assert line.startswith("Error: cannot read t1.mhd as MetaImage (Uncompress failed)"), line
    assert "Uncompress" not in capfd.readouterr().err


@pytest.mark.parametrize("shown", [True, False])
def test_itk_warning_display_is_put_back(tmp_path: Path, shown: bool) -> None:
    import SimpleITK as sitk

    from medi2i.errors import InputError
    from medi2i.io import read_volume

    path = metaimage(tmp_path / "t1.mha", "ElementSpacing", "1 1 2")
    before = sitk.ProcessObject_GetGlobalWarningDisplay()
    sitk.ProcessObject_SetGlobalWarningDisplay(shown)
    try:
        read_volume(path)
        assert sitk.ProcessObject_GetGlobalWarningDisplay() == shown
        path.write_bytes(path.read_bytes()[:300])
        with pytest.raises(InputError):
            read_volume(path)
        assert sitk.ProcessObject_GetGlobalWarningDisplay() == shown
    finally:
        sitk.ProcessObject_SetGlobalWarningDisplay(before)


def test_quiet_itk_keeps_what_was_printed_and_puts_stderr_back(
    capfd: pytest.CaptureFixture[str],
) -> None:
    import os
    import threading

    import SimpleITK as sitk

    from medi2i.io.itk_output import quiet_itk

    os.write(2, b"before\n")
    with quiet_itk() as outer:
        assert not sitk.ProcessObject_GetGlobalWarningDisplay()
        os.write(2, b"MetaImage: one\n")
        inner_text: list[str] = []

        def overlapping() -> None:
            with quiet_itk() as inner:
                os.write(2, b"MetaImage: two\n")
                inner_text.append(inner.text())

        thread = threading.Thread(target=overlapping)
        thread.start()
        thread.join()
        assert outer.text() == "MetaImage: one / MetaImage: two"
    os.write(2, b"after\n")

    assert inner_text == ["MetaImage: two"]
    assert capfd.readouterr().err == "before\nafter\n"
