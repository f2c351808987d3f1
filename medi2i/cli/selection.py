"""The series-selection options shared by ``predict``, ``batch`` and ``dicom ls``.

A command decorated with :func:`selection_options` gets ``--modality``,
``--description``, ``--orientation``, ``--series-uid``, ``--largest``, ``--volume`` and
``--slice-tolerance``, and receives them as one keyword argument, ``selector``: a
:class:`~medi2i.dicom.reading.series_selection.SeriesSelector`, or ``None`` when none was given.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from medi2i.errors import OptionsError

if TYPE_CHECKING:
    from medi2i.dicom.reading.series_selection import SeriesSelector

F = TypeVar("F", bound=Callable[..., Any])

_OPTIONS = (
    click.option("--modality", help="Pick the series of this modality (CT, MR, ...)."),
    click.option("--description", help="Pick by a regular expression searched in the description."),
    click.option(
        "--orientation",
        type=click.Choice(["axial", "sagittal", "coronal", "oblique"]),
        help="Pick the series with this slice orientation.",
    ),
    click.option("--series-uid", help="Pick the series with this Series Instance UID."),
    click.option("--largest", is_flag=True, help="When several series match, take the largest."),
    click.option(
        "--volume",
        type=click.IntRange(min=1),
        help="Of a series of several volumes (echoes, time points), take volume N.",
    ),
    click.option(
        "--slice-tolerance",
        "slice_tolerance_mm",
        type=click.FloatRange(min=0, min_open=True),
        help="How far (mm) a slice may lie from the regular grid fitted to its series "
        "[default: 0.2 mm or 5 % of the spacing].",
    ),
)
_KEYS = (
    "modality",
    "description",
    "orientation",
    "series_uid",
    "largest",
    "volume",
    "slice_tolerance_mm",
)


def selection_options(command: F) -> F:
    """Add the selection options to ``command``; it receives ``selector`` instead."""

    @functools.wraps(command)
    def with_selector(*args: Any, **kwargs: Any) -> Any:
        given = {key: kwargs.pop(key) for key in _KEYS}
        return command(*args, selector=series_selector(**given), **kwargs)

    for option in reversed(_OPTIONS):
        with_selector = option(with_selector)
    return with_selector  # type: ignore[return-value]


def series_selector(**given: object) -> SeriesSelector | None:
    """The selector of the given option values (``None``/``False`` ones left out).

    Raises:
        OptionsError: An invalid value, e.g. a regular expression that does not compile.
    """
    from pydantic import ValidationError

    from medi2i.dicom.reading.series_selection import SeriesSelector

    rules = {key: value for key, value in given.items() if value not in (None, False)}
    if not rules:
        return None
    try:
        return SeriesSelector.model_validate(rules)
    except ValidationError as exc:
        problems = "; ".join(f"{_flag(e['loc'][0])}: {e['msg']}" for e in exc.errors())
        raise OptionsError(f"invalid series selection: {problems}") from None


def _flag(field: object) -> str:
    name = "slice-tolerance" if field == "slice_tolerance_mm" else str(field).replace("_", "-")
    return f"--{name}"


def picks_a_series(selector: SeriesSelector | None) -> bool:
    """Whether ``selector`` holds a selection rule (the tolerance alone is none)."""
    return selector is not None and bool(selector.model_fields_set - {"slice_tolerance_mm"})


def slice_tolerance(selector: SeriesSelector | None) -> float | None:
    """The scan's slice tolerance in mm, ``None`` for the default."""
    return selector.slice_tolerance_mm if selector is not None else None
