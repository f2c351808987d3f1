"""The DICOM geometry benchmark's report (``dicom_geometry.py``): the counts, machine and
versions as JSON, and the Markdown tables."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import datetime, timezone

import nibabel as nib
import numpy as np
import pydicom
import SimpleITK as sitk
from dicom_geometry_cases import Row
from dicom_geometry_comparison import TOLERANCE_MM, VALUE_TOLERANCE

import medi2i


def summary(rows: list[Row], excluded: list[Row]) -> Row:
    counts: Row = {"series": len(rows), "medi2i_read": sum("shape" in r["medi2i"] for r in rows)}
    for name in ("dcm2niix", "simpleitk"):
        both = [r for r in rows if "shape" in r["medi2i"] and "corner_error_mm" in r[name]]
        counts[name] = {
            "both_read": len(both),
            "corners_within_0.1mm": sum(r[name]["corner_error_mm"] <= TOLERANCE_MM for r in both),
            "corners_and_values_agree": sum(r[name]["agrees"] for r in both),
            "both_refused": sum(r[name]["agrees"] for r in rows if "refused" in r["medi2i"]),
            "medi2i_refused_reference_read": sum(
                "refused" in r["medi2i"] and "refused" not in r[name] for r in rows
            ),
            "reference_refused_medi2i_read": sum(
                "shape" in r["medi2i"] and "refused" in r[name] for r in rows
            ),
            "disagreements": sum(not r[name]["agrees"] for r in rows),
        }
    counts["unexplained"] = [
        r["case"]
        for r in rows
        if not (r["dcm2niix"]["agrees"] and r["simpleitk"]["agrees"]) and not r["explanation"]
    ]
    return {
        "benchmark": "DICOM geometry: medi2i vs dcm2niix and SimpleITK",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
        },
        "versions": {
            "python": platform.python_version(),
            "medi2i": medi2i.__version__,
            "pydicom": pydicom.__version__,
            "simpleitk": sitk.Version.VersionString(),
            "dcm2niix": _dcm2niix_version(),
            "nibabel": nib.__version__,
            "numpy": np.__version__,
        },
        "setup": {
            "tolerance_mm": TOLERANCE_MM,
            "value_tolerance": VALUE_TOLERANCE,
            "medi2i": "medi2i.read_volume(folder)",
            "dcm2niix": "dcm2niix -b n -z n -f out -o OUT folder; nibabel get_fdata, affine",
            "simpleitk": "ImageSeriesReader(GetGDCMSeriesFileNames(folder)); LPS -> RAS",
            "corner_error": "symmetric max nearest-corner distance of the 8 corner voxel "
            "centres (RAS mm)",
        },
        "summary": counts,
        "excluded": excluded,
        "rows": rows,
    }


def _dcm2niix_version() -> str:
    done = subprocess.run(["dcm2niix", "-v"], capture_output=True, text=True, check=False)
    return (done.stdout.strip().splitlines() or ["?"])[-1]


def markdown(report: Row) -> str:
    counts, versions, machine = report["summary"], report["versions"], report["machine"]
    lines = [
        "# DICOM geometry: medi2i vs dcm2niix and SimpleITK",
        "",
        f"{counts['series']} series ({counts['medi2i_read']} read by medi2i): the multi-slice "
        "DICOM "
        "series in the test data of the installed packages and synthetic ones from "
        "`medi2i.testing.dicom_series`. Corner error: the 8 corner voxel centres in RAS mm, "
        "compared as unordered sets (largest nearest-corner distance). Values: after mapping the "
        "reference's axes onto medi2i's by geometry (mapping shown as medi2i axis <- reference "
        f"axis). Agreement: corners within {TOLERANCE_MM} mm and identical values, or both refuse.",
        "",
        "| reference | both read | corners within 0.1 mm | corners + values agree | both refused "
        "| only medi2i refused | only reference refused | disagreements |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in ("dcm2niix", "simpleitk"):
        c = counts[name]
        lines.append(
            f"| {name} | {c['both_read']} | {c['corners_within_0.1mm']} "
            f"| {c['corners_and_values_agree']} "
            f"| {c['both_refused']} | {c['medi2i_refused_reference_read']} "
            f"| {c['reference_refused_medi2i_read']} | {c['disagreements']} |"
        )
    lines += [
        "",
        "| series | kind | medi2i | dcm2niix | SimpleITK |",
        "|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        lines.append(
            f"| {row['case']} | {row['kind']} | {_cell(row['medi2i'])} "
            f"| {_cell(row['dcm2niix'])} | {_cell(row['simpleitk'])} |"
        )
    lines += ["", "## Disagreements", ""]
    for row in report["rows"]:
        if row["dcm2niix"]["agrees"] and row["simpleitk"]["agrees"]:
            continue
        lines.append(f"- **{row['case']}**: {row['explanation'] or 'UNEXPLAINED'}")
        for name in ("medi2i", "dcm2niix", "simpleitk"):
            part = row[name]
            if "refused" in part:
                lines.append(f"  - {name} refused: `{part['refused']}`")
            if part.get("note"):
                lines.append(f"  - {name}: {part['note']}")
    lines += ["", "## Left out", ""]
    lines += [f"- {item['file']}: {item['why']}" for item in report["excluded"]]
    lines += [
        "",
        f"Machine: {machine['platform']}, {machine['cpu_count']} CPUs; "
        f"Python {versions['python']}, medi2i {versions['medi2i']}, "
        f"pydicom {versions['pydicom']}, SimpleITK {versions['simpleitk']}, "
        f"dcm2niix {versions['dcm2niix']}, nibabel {versions['nibabel']}, "
        f"numpy {versions['numpy']}; "
        f"{report['date']}.",
        "",
    ]
    return "\n".join(lines)


def _cell(part: Row) -> str:
    if "refused" in part:
        return "refused"
    shape = "x".join(str(n) for n in part.get("shape", []))
    if "corner_error_mm" not in part:
        return shape
    mark = "" if part["agrees"] else " **≠**"
    values = part["values"]
    if values == "differ" and part.get("values_match_under"):
        values = f"differ; match under {part['values_match_under'][0]}"
    elif values == "differ":
        values = f"differ (max {part['max_abs_value_diff']:.3g})"
    return f"{shape}; {part['corner_error_mm']:.3g} mm; {values}{mark}"
