"""Which received series a DICOM node translates: the reasons it ``skipped`` one that is
no image, a localizer, of a modality its method does not take or not what its rules pick,
and the series it picks from those it received."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from medi2i.errors import InputError

if TYPE_CHECKING:
    from medi2i.dicom.reading.series_records import SeriesInfo
    from medi2i.dicom.reading.series_selection import SeriesSelector
    from medi2i.method import Method
    from medi2i.prediction import Condition


def skip_reason(
    found: Sequence[SeriesInfo],
    method: Method,
    condition: Condition,
    selector: SeriesSelector | None,
    *,
    force_modality: bool = False,
) -> str | None:
    """Why the series is ``skipped``: no image in it, or not what the rules pick.

    Args:
        found: The received files' series.
        method: The node's method.
        condition: Its predict-time condition.
        selector: The node's rules, or ``None`` to take any image series.
        force_modality: Translate a series of another modality than the method takes.
    """
    images = [info for info in found if info.images]
    if not images:
        kinds = sorted({info.modality or info.sop_class_name or "?" for info in found})
        return f"not an image series ({', '.join(kinds)}); only image series are translated"
    if all(info.is_localizer for info in images):
        return (
            f"a localizer (scout) series of {images[0].number_of_images} image(s), not "
            "a volume; only volumes are translated"
        )
    unfit = unfit_modality(images[0].modality, method, condition, force_modality=force_modality)
    if unfit is not None:
        return unfit
    if selector is not None and not any(map(selector.matches, images)):
        first = images[0]
        return (
            f"not selected ({first.modality or '?'} '{first.description}'; the node "
            f"translates {_wanted(selector)})"
        )
    return None


def unfit_modality(
    modality: str, method: Method, condition: Condition, *, force_modality: bool = False
) -> str | None:
    """Why a series of ``modality`` is not for ``method``, or ``None``."""
    from medi2i.prediction_checks import expected_input

    if not force_modality and modality:
        try:
            domain = method.input_domain(method.parse_condition(condition))
            expected, _ = expected_input(method, domain)
        except Exception:  # the translation says what is wrong with the condition
            expected = "any"
        if expected not in ("any", "") and modality != expected:
            return (
                f"a {modality} series; {method.id!r} takes {expected} input (send it "
                "series of that modality)"
            )
    declared = method.output_spec.modality
    if modality not in ("CT", "MR") and declared not in ("CT", "MR"):
        return (
            f"a {modality or 'modality-less'} series; the node writes CT or MR series and "
            f"neither the series nor {method.id!r} (output modality {declared!r}) says "
            "which: only CT and MR series are translated with this method"
        )
    return None


def pick_series(
    series_uid: str, found: Sequence[SeriesInfo], selector: SeriesSelector | None
) -> SeriesInfo:
    """The series to translate among ``found`` (the received series ``series_uid``).

    Raises:
        InputError: Its instances belong to several studies.
    """
    from medi2i.dicom.reading.series_selection import select_series

    images = [info for info in found if info.images]
    studies = sorted({info.study_instance_uid for info in images})
    if len(studies) > 1:
        raise InputError(
            f"series {series_uid}: its instances belong to {len(studies)} studies "
            f"({', '.join(studies)}), but a Series Instance UID names one series of one "
            "study; nothing was translated: send each study's series with its own Series "
            "Instance UID"
        )
    return select_series(found, selector)


def _wanted(selector: SeriesSelector) -> str:
    """The node's rules, as ``key=value`` pairs."""
    rules = selector.model_dump(exclude_defaults=True, exclude={"slice_tolerance_mm"})
    return ", ".join(f"{key}={value}" for key, value in rules.items())
