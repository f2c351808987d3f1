"""DICOM geometry evidence: medi2i's reader against dcm2niix and SimpleITK, series by series.

Every multi-slice DICOM series that the installed Python packages ship as test data (the
folders of the venv's site-packages that hold ``.dcm`` files: pydicom's test files,
pydicom-data's store, nibabel's and pynetdicom's test data; files are taken as they are
on disk, nothing is downloaded) plus synthetic series with known geometry from
:mod:`medi2i.testing.dicom_series` (jittered positions, gantry tilt, oblique, coronal,
sagittal, reversed Instance Numbers, a gap, an enhanced multi-frame file, a Siemens
mosaic) is read three ways:

- medi2i: ``medi2i.read_volume(folder)``, a ``(1, X, Y, Z)`` volume with a RAS affine;
- dcm2niix: converted into a temporary folder, the NIfTI read with nibabel (RAS affine);
- SimpleITK: ``ImageSeriesReader`` with GDCM's series file names (LPS, made RAS).

A *series* is a folder of single-frame files grouped by Series Instance UID with at least
two distinct Image Positions (files that are one image in several transfer syntaxes are
left out and listed), a grayscale multi-frame file, or a Siemens mosaic. Each is copied
(gzipped ones decompressed) alone into its own folder, so the three readers see the same
files.

Geometry is compared without resampling: the world (RAS mm) positions of the 8 corner
voxel centres of each reader's grid are compared as unordered sets (the largest distance
from a corner to the nearest corner of the other grid, both ways), which holds whatever
axis order and flips a reader chose. Voxel values are compared after mapping the
reference array onto medi2i's axes with the permutation and flips that bring its grid
onto medi2i's; when they differ, every other axis mapping of equal shape is tried, so a
flipped or shuffled slice order shows as such.

The parts: ``dicom_geometry_cases.py`` (the series), ``dicom_geometry_readers.py`` (the
three readers), ``dicom_geometry_comparison.py`` (corners and values) and
``dicom_geometry_report.py`` (JSON and Markdown); this script runs them.

Usage: python benchmarks/dicom_geometry.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import site
import tempfile
from pathlib import Path

from dicom_geometry_cases import Case, Row, shipped_cases, synthetic_cases
from dicom_geometry_comparison import agrees, compare
from dicom_geometry_readers import lay_out, read_dcm2niix, read_medi2i, read_simpleitk
from dicom_geometry_report import markdown, summary

RESULTS = Path(__file__).parent / "results"

_MOSAIC_SITK = "SimpleITK (GDCM) has no mosaic support: it reads the tiled image as one 2D slice."
# Why a case disagrees, written after reading the files and the readers' messages, keyed
# by a part of the case name; a disagreement with no entry is reported as unexplained.
EXPLANATIONS: dict[str, str] = {
    "OBXXXX1A_": "Ultrasound with PALETTE COLOR pixels: medi2i refuses (not greyscale) and "
    "SimpleITK refuses (it applies the palette: 3 components); dcm2niix writes the palette "
    "indices as a 2-frame stack without geometry ('Unable to determine slice direction').",
    "emri_small": "Enhanced MR without Per-frame Functional Groups and without any Image "
    "Position or Orientation, so where the frames lie is unknown: medi2i refuses; dcm2niix "
    "and SimpleITK make up a grid (dcm2niix warns 'Unable to determine slice direction'). "
    "dcm2niix also refuses the RLE and JPEG-LS copies (decoders not built in), SimpleITK "
    "the truncated JPEG 2000 copy.",
    "liver": "DICOM SEG, 1 bit per pixel: medi2i refuses a binary segmentation; dcm2niix "
    "and SimpleITK unpack the bits into a 3-frame stack.",
    "siemens_dwi": _MOSAIC_SITK + " dcm2niix agrees with medi2i on grid and values.",
    "/0.dcm": _MOSAIC_SITK + " dcm2niix: same grid, values identical for the first tile "
    "row (slices 0-6) and different from slice 7 on. This 256x256 mosaic holds 48 slices "
    "as 7x7 tiles of 36 px with 4 px of padding; medi2i cuts tiles at 36-px strides of "
    "the 256-px rows (its slice 7 is mosaic rows 36-71, columns 0-35), dcm2niix takes its "
    "slice 7 elsewhere (found at row 4, column 146). The pixel data is a repeating 16-row "
    "test pattern, not an image, and nibabel's own mosaic reader refuses the file (cannot "
    "reshape 65536 values into 7x36x7x36), so neither cut can be checked against truth here.",
    "rtdose": "RT Dose, 15 frames placed by Grid Frame Offset Vector (0-70 mm, 5 mm steps), "
    "Dose Grid Scaling 1e-6. medi2i places frames 5 mm apart and scales to Gy. SimpleITK "
    "agrees on the grid but returns the stored integers (1e6 x medi2i). dcm2niix ignores "
    "Grid Frame Offset Vector and stacks frames 1 mm apart ('Unable to determine slice "
    "direction'), so its far corners are 56 mm (14 x 4 mm) short; it also returns stored "
    "integers. Where a reference's values are not proportional, its decoder fails on 32-bit "
    "pixels (dcm2niix on RLE, SimpleITK on big endian: values near +-2^31 or 2^32).",
    "CT2 (4 files": "4 slices of 'Routine Brain' far apart (medi2i counts 161 missing "
    "slices at 1.25 mm): medi2i refuses as missing slices; dcm2niix writes an uneven stack "
    "with a warning plus an equalized (resampled) copy; SimpleITK stacks them silently.",
    "CT2N": "A 2-image CT scout: medi2i refuses it as a localizer; both references stack it.",
    "MR2 (3 files": "A three-plane localizer (3 images in 3 orientations): medi2i refuses; "
    "dcm2niix writes 3 separate 2D images; SimpleITK stacks 3 orthogonal images into one "
    "volume whose geometry is meaningless.",
    "MR700": "7 angiography projections in 7 orientations: medi2i refuses as a localizer; "
    "dcm2niix writes 7 separate 2D images; SimpleITK stacks them into one volume.",
    "gantry tilt": "SimpleITK (GDCM) ignores gantry tilt: its grid is orthogonal, so the far "
    "corners are 5.9 mm off; dcm2niix's uncorrected output keeps the sheared grid as medi2i "
    "does (its tilt-corrected, resampled out_Tilt_1.nii is not compared).",
    "one slice missing": "medi2i refuses the gap; dcm2niix writes an uneven stack with a "
    "warning plus an equalized (resampled) copy; SimpleITK stacks the slices silently as "
    "if evenly spaced.",
    "frames shuffled": "SimpleITK (GDCM) takes the frames in stored order and ignores the "
    "per-frame positions, so with shuffled frames its slice order and grid are wrong; "
    "dcm2niix sorts the frames by position and agrees with medi2i.",
    "Siemens mosaic, 9": _MOSAIC_SITK + " dcm2niix agrees with medi2i.",
}
EXPLANATIONS["/1.dcm"] = EXPLANATIONS["/0.dcm"]  # the same pattern, another b-value
EXPLANATIONS["2 echoes in one series"] = (
    "medi2i splits the series by Echo Numbers and reads echo 1 (--volume 1), as dcm2niix "
    "writes it (out_e1.nii): identical. SimpleITK (GDCM) stacks the 20 files of both "
    "echoes into one 20-slice volume, each position twice, so it is not compared."
)


def measure(case: Case, scratch: Path) -> Row:
    folder = lay_out(case, scratch / "in")
    ours = read_medi2i(folder, case.volume)
    references = {
        "dcm2niix": read_dcm2niix(folder, scratch / "dcm2niix"),
        "simpleitk": read_simpleitk(folder),
    }
    row: Row = {
        "case": case.name,
        "source": case.source,
        "kind": case.kind,
        "files": len(case.files),
    }
    row["medi2i"] = (
        {"shape": list(ours.array.shape)} if ours.array is not None else {"refused": ours.refused}
    )
    for name, reading in references.items():
        result = (
            compare(ours, reading) if reading.array is not None and ours.array is not None else {}
        )
        if reading.refused:
            result["refused"] = reading.refused
        elif ours.array is None:
            result["shape"] = list(reading.array.shape)  # type: ignore[union-attr]
        if reading.note:
            result["note"] = reading.note
        result["agrees"] = agrees(ours, reading, result)
        row[name] = result
    row["explanation"] = next((text for key, text in EXPLANATIONS.items() if key in case.name), "")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--keep", type=Path, help="keep the laid-out series and conversions here")
    args = parser.parse_args()
    site_packages = Path(next(p for p in site.getsitepackages() if Path(p, "pydicom").is_dir()))
    with tempfile.TemporaryDirectory(prefix="dicom-geometry-") as temporary:
        root = args.keep or Path(temporary)
        shipped, excluded = shipped_cases(site_packages)
        cases = shipped + synthetic_cases(root / "synthetic")
        rows = []
        for number, case in enumerate(cases):
            print(f"[{number + 1}/{len(cases)}] {case.name}", flush=True)
            rows.append(measure(case, root / f"case-{number:03d}"))
        report = summary(rows, excluded)
        # the scratch folder means nothing to a reader of the results: name it <scratch>
        scratch = str(root)
        text = json.dumps(report, indent=2).replace(scratch, "<scratch>")
        report = json.loads(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "dicom_geometry.json").write_text(text + "\n")
    (RESULTS / "dicom_geometry.md").write_text(markdown(report))
    print(json.dumps(report["summary"], indent=2))


if __name__ == "__main__":
    main()
