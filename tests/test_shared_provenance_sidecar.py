"""``OUT`` (a DICOM series) and ``OUT.nii.gz`` share the sidecar ``OUT.provenance.json``.

The README's DICOM section writes both from one series; the second predict must not
replace the first output's provenance record without --overwrite (it did, so the series
was described by another run's method, options, weights and seed).
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
from click.testing import CliRunner, Result

from medi2i.cli.main import build_cli
from medi2i.plugins import load_plugins
from medi2i.testing import example_methods


def translate(source: Path, output: Path, *extra: str) -> Result:
    plugins = load_plugins()
    plugins.manager.register(example_methods, name="examples")
    args = ["predict", str(source), str(output), "--method", "example-self-rescaling"]
    args.append("--no-progress")
    return CliRunner().invoke(build_cli(plugins), [*args, *extra])


def test_a_second_output_of_the_same_stem_keeps_the_first_one_s_provenance(
    tmp_path: Path,
) -> None:
    values = np.random.default_rng(0).normal(400.0, 100.0, (12, 10, 8)).astype(np.float32)
    source = tmp_path / "in.nii.gz"
    nib.save(nib.Nifti1Image(values, np.eye(4)), str(source))
    first = translate(source, tmp_path / "sct")
    assert first.exit_code == 0, first.output
    sidecar = tmp_path / "sct.provenance.json"
    record = sidecar.read_bytes()
    assert json.loads(record)["settings"]["seed"] == 0
    # what ran: the CLI's default device "auto" resolved, AMP only where CUDA runs
    ran_on = json.loads(record)["ran_on"]
    assert ran_on["device"] != "auto"
    assert ran_on["amp"] == ran_on["device"].startswith("cuda")

    refused = translate(source, tmp_path / "sct.nii.gz", "--seed", "7")
    assert refused.exit_code == 1
    assert refused.stderr.strip().splitlines() == [
        f"Error: {sidecar}, where the provenance of {tmp_path / 'sct.nii.gz'} is written, is "
        f"the provenance of the existing output {tmp_path / 'sct'}; give "
        f"{tmp_path / 'sct.nii.gz'} another name (e.g. {tmp_path / 'sct-2.nii.gz'}), or pass "
        "--overwrite to replace that record"
    ]
    assert sidecar.read_bytes() == record
    assert not (tmp_path / "sct.nii.gz").exists()

    # the name it suggests is free, and --overwrite is consent
    assert translate(source, tmp_path / "sct-2.nii.gz", "--seed", "7").exit_code == 0
    replaced = translate(source, tmp_path / "sct.nii.gz", "--seed", "7", "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert json.loads(sidecar.read_text())["settings"]["seed"] == 7


def test_the_record_names_its_output_so_a_refusal_names_the_right_one(tmp_path: Path) -> None:
    values = np.random.default_rng(0).normal(400.0, 100.0, (12, 10, 8)).astype(np.float32)
    source = tmp_path / "in.nii.gz"
    nib.save(nib.Nifti1Image(values, np.eye(4)), str(source))
    assert translate(source, tmp_path / "o.nrrd").exit_code == 0
    sidecar = tmp_path / "o.provenance.json"
    assert json.loads(sidecar.read_text())["output"]["file"] == "o.nrrd"
    replaced = translate(source, tmp_path / "o.mha", "--overwrite")  # the user's consent
    assert replaced.exit_code == 0, replaced.output
    assert json.loads(sidecar.read_text())["output"]["file"] == "o.mha"
    refused = translate(source, tmp_path / "o.nhdr")
    assert refused.exit_code != 0
    assert "the provenance of the existing output" in refused.output
    assert str(tmp_path / "o.mha") in refused.output  # whose it is now, not o.nrrd's
    again = translate(source, tmp_path / "o.mha", "--overwrite")  # its own record
    assert again.exit_code == 0, again.output
