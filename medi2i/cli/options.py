"""What the ``medi2i`` commands share: options, the parsing of their values, and the
plugins and registry a command runs with.

Decorators without arguments add a fixed set of options (``@overwrite_option``);
those called with ``()`` take the help text, which differs between commands
(``@json_option()``). Every command module takes its shared options from here.

Selection options: a command decorated with :func:`selection_options` gets
``--modality``, ``--description``, ``--orientation``, ``--series-uid``, ``--largest``,
``--volume`` and ``--slice-tolerance``, and receives them as one keyword argument,
``selector``: a :class:`~medi2i.dicom.reading.series_selection.SeriesSelector`, or
``None`` when none was given.

Nothing heavy is imported at the top of this module, so ``medi2i --help`` stays fast.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import yaml

from medi2i.bounded_yaml import load_yaml
from medi2i.errors import OptionsError
from medi2i.plugins import PluginSet, load_plugins

if TYPE_CHECKING:
    from medi2i.dicom.reading.series_selection import SeriesSelector
    from medi2i.registry import Registry
    from medi2i.settings import InferenceSettings

F = TypeVar("F", bound=Callable[..., Any])

MAX_SEED = 2**32 - 1
"""``medi2i.settings.MAX_SEED``, which this module does not import: it loads pydantic."""

OUTPUT_FORMATS = ("dicom", "nifti")
"""The output formats ``--format`` may list."""


def _apply(options: list[Callable[[F], F]], command: F) -> F:
    """Decorate ``command`` with ``options``, listed in the order ``--help`` shows them."""
    for option in reversed(options):
        command = option(command)
    return command


# -- the plugins a command runs with ------------------------------------------------------


def loaded_plugins(ctx: click.Context) -> PluginSet:
    """The plugins the command line was built with (the root context's object).

    A command invoked on its own, outside a ``medi2i`` group, loads them.
    """
    plugins = ctx.find_root().obj
    return plugins if isinstance(plugins, PluginSet) else load_plugins()


def command_registry(ctx: click.Context) -> Registry:
    """A registry of what the command line's plugins provide."""
    from medi2i.registry import Registry

    return Registry(loaded_plugins(ctx))


# -- output --------------------------------------------------------------------------------


class OutputPath(click.Path):
    """A path the command writes: like ``click.Path(path_type=Path)``, but a value that
    ends in a path separator (which names a folder) and has a file suffix
    (``out.nii.gz/``) is refused, instead of the separator being dropped and a file
    written where the user asked for a folder. A ``..`` after a folder that does not
    exist yet (``missing/../x.nii``) is resolved, as the system will once the folder
    exists (:func:`medi2i.io.destinations.settled_path`): the command checks and writes
    the output it will replace, and creates no such folder."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(path_type=Path, **kwargs)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from medi2i.errors import OutputError
        from medi2i.io.destinations import as_output_path

        if isinstance(value, str):
            try:
                as_output_path(value)
            except OutputError as error:
                self.fail(str(error), param, ctx)
        converted = super().convert(value, param, ctx)
        # "missing/../x.nii" is x.nii: checked and written there, creating no "missing"
        return as_output_path(converted) if isinstance(converted, Path) else converted


def json_option(help: str = "Print JSON instead of a table.") -> Callable[[F], F]:
    """``--json`` (parameter ``as_json``): machine-readable output on stdout."""
    return click.option("--json", "as_json", is_flag=True, help=help)


def progress_option(command: F) -> F:
    """``--progress/--no-progress``: show a progress bar; by default when standard error
    is a terminal, so a log or a pipe gets no carriage-return bar lines."""
    return click.option(
        "--progress/--no-progress",
        default=None,
        callback=_progress_default,
        help="Progress bar on standard error [default: when it is a terminal].",
    )(command)


def _progress_default(_ctx: click.Context, _param: click.Parameter, value: bool | None) -> bool:
    if value is not None:
        return value
    return stderr_is_terminal()


def stderr_is_terminal() -> bool:
    """Whether standard error is a terminal (where a progress bar redraws in place)."""
    from medi2i.settings import stderr_is_terminal as is_terminal

    return is_terminal()


def overwrite_option(command: F) -> F:
    """``--overwrite``: consent to replace an existing output."""
    return click.option(
        "--overwrite",
        is_flag=True,
        help="Replace existing outputs (atomically, only after the new output is complete). "
        "Without it an existing output is refused. An input is never replaced.",
    )(command)


def nonfinite_option(command: F) -> F:
    """``--nonfinite``: what to do with NaN or infinite input voxels."""
    return click.option(
        "--nonfinite",
        type=click.Choice(["error", "zero", "nearest"]),
        default="error",
        show_default=True,
        help="NaN or infinite input voxels: refuse the input, set them to 0, or use the "
        "nearest finite voxel's value.",
    )(command)


def format_option(help: str) -> Callable[[F], F]:
    """``--format`` (parameter ``format_list``): output formats, parsed by
    :func:`output_formats`, which checks the value as the command line is read (before
    a tree is scanned or a model loaded); the parameter stays the text given."""
    return click.option(
        "--format",
        "format_list",
        default="dicom",
        show_default=True,
        callback=_checked_formats,
        help=help,
    )


def _checked_formats(ctx: click.Context, param: click.Parameter, value: str) -> str:
    output_formats(value)  # refused in one line (OptionsError) before any work
    return value


def output_formats(value: str) -> tuple[str, ...]:
    """The formats a ``--format`` value lists: ``"dicom,nifti"`` → ``("dicom", "nifti")``.

    Raises:
        OptionsError: An empty list, a format other than those of
            :data:`OUTPUT_FORMATS`, or one listed twice (``nifti,NIfTI``).
    """
    names = tuple(part.strip().lower() for part in value.split(",") if part.strip())
    unknown = [name for name in names if name not in OUTPUT_FORMATS]
    if unknown or not names:
        raise OptionsError(f"--format {value!r}: use dicom, nifti or dicom,nifti")
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise OptionsError(
            f"--format {value!r} lists {' and '.join(twice)} more than once; give each "
            "format once: dicom, nifti or dicom,nifti"
        )
    return names


# -- method and inference ------------------------------------------------------------------


def method_options(command: F) -> F:
    """``--method``, ``--model``, ``--option`` and ``--condition`` (parameters
    ``method_id``, ``model``, ``option_pairs``, ``condition_pairs``)."""
    return _apply(
        [
            click.option("--method", "method_id", help="Id of a method that needs no training."),
            click.option(
                "--model",
                type=click.Path(path_type=Path),
                help="Trained-model folder or zip, or an ONNX export of one (model.onnx with its "
                "model.onnx.json; needs onnxruntime), instead of --method.",
            ),
            click.option(
                "--option",
                "-o",
                "option_pairs",
                multiple=True,
                help="Method option key=value (repeat).",
            ),
            click.option(
                "--condition",
                "-c",
                "condition_pairs",
                multiple=True,
                help="Predict-time key=value, e.g. direction=b2a (repeat).",
            ),
        ],
        command,
    )


def key_values(pairs: tuple[str, ...], what: str) -> dict[str, object]:
    """``("a=1", "b=[1,2]")`` → ``{"a": 1, "b": [1, 2]}`` (values parsed as YAML).

    Args:
        pairs: The ``key=value`` strings of a repeated option.
        what: The option, named in errors (``"--option"``).

    Raises:
        OptionsError: A pair without ``=`` or a value that is not valid YAML.
    """
    parsed: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise OptionsError(f"{what} {pair!r} must look like key=value")
        try:
            parsed[key.strip()] = load_yaml(value)[0]
        except yaml.YAMLError as exc:
            shown = pair if len(pair) <= 60 else pair[:57] + "..."
            raise OptionsError(f"{what} {shown!r}: the value is not valid YAML: {exc}") from None
    return parsed


DEVICE_HELP = "auto (CUDA when present), cpu, cuda or cuda:N."


def device_option(help: str = DEVICE_HELP) -> Callable[[F], F]:
    """``--device``: where a method runs, ``auto`` by default."""
    return click.option("--device", default="auto", show_default=True, help=help)


def inference_options(command: F) -> F:
    """The sliding-window, device and input-checking options of the commands that
    predict; :func:`inference_settings` turns their values into settings."""
    return _apply(
        [
            click.option(
                "--roi-size",
                help="Window size in voxels, e.g. 96 or 96,96,64 (default: the method's).",
            ),
            click.option(
                "--sw-batch-size",
                type=int,
                default=None,
                help="Windows per batch (default: 4 on a GPU; on the CPU 4 windows of up "
                "to 96³ voxels, fewer of larger ones, one of 128³).",
            ),
            click.option(
                "--overlap", default=0.25, show_default=True, help="Window overlap fraction [0, 1)."
            ),
            click.option(
                "--blend",
                type=click.Choice(["gaussian", "constant"]),
                default="gaussian",
                show_default=True,
                help="How overlapping windows are blended.",
            ),
            click.option(
                "--mirror-axes",
                default="",
                metavar="AXES",
                help="Test-time mirroring: also predict each window mirrored along every "
                "combination of these array axes of the input volume, e.g. 0 or 0,1, and average "
                "[default: off].",
            ),
            click.option(
                "--reflect-padding",
                default="0",
                metavar="VOXELS",
                help="Run the method on the volume extended on each side by its mirror "
                "image, e.g. 32 or 64,0,0 voxels per array axis (capped at each axis's length "
                "minus one), and crop the output back: context for tissue cut by the volume's "
                "edge, e.g. a head cut at the midline "
                "[default: 0, off].",
            ),
            device_option(),
            click.option(
                "--amp/--no-amp", default=True, show_default=True, help="Mixed precision on CUDA."
            ),
            progress_option,
            nonfinite_option,
            click.option(
                "--force-modality",
                is_flag=True,
                help="Skip the modality checks of the input: use a DICOM series whose "
                "Modality is not the method's input modality, a NIfTI input given as MR "
                "although 5 % or more of its voxels are at or below -500 (as a CT in HU's "
                "air), or one given as CT in HU without a voxel at or below -500 (a CT "
                "cropped inside the body).",
            ),
            click.option(
                "--seed",
                type=click.IntRange(min=0, max=MAX_SEED),
                default=0,
                show_default=True,
                help="Seed of anything random a method does at predict time (a style code, "
                "fitting on the input), 0 to 4294967295 (2**32 - 1); recorded in the "
                "provenance.",
            ),
        ],
        command,
    )


def parse_roi_size(value: str | None) -> tuple[int, int, int] | None:
    """A ``--roi-size`` value: ``"96"`` → ``(96, 96, 96)``, ``"96,96,64"`` or ``"96x96x64"``.

    Raises:
        OptionsError: Not one or three positive integers.
    """
    if value is None:
        return None
    parts = value.replace("x", ",").split(",")
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        raise OptionsError(f"--roi-size {value!r} must be one or three integers") from None
    if len(sizes) == 1:
        sizes *= 3
    if len(sizes) != 3 or min(sizes) < 1:
        raise OptionsError(f"--roi-size {value!r} must be one or three positive integers")
    return (sizes[0], sizes[1], sizes[2])


def parse_mirror_axes(value: str) -> tuple[int, ...]:
    """A ``--mirror-axes`` value: ``""`` → ``()``, ``"0,1"`` → ``(0, 1)``.

    Raises:
        OptionsError: Not a comma-separated list of integers.
    """
    parts = [p.strip() for p in value.split(",") if p.strip()]
    try:
        return tuple(int(p) for p in parts)
    except ValueError:
        raise OptionsError(
            f"--mirror-axes {value!r} must be array axes separated by commas, e.g. 0,1"
        ) from None


def parse_reflect_padding(value: str) -> tuple[int, int, int]:
    """A ``--reflect-padding`` value: ``"32"`` → ``(32, 32, 32)``, ``"64,0,0"``.

    Raises:
        OptionsError: Not one or three integers >= 0.
    """
    parts = value.replace("x", ",").split(",")
    try:
        widths = [int(p) for p in parts]
    except ValueError:
        raise OptionsError(
            f"--reflect-padding {value!r} must be one or three whole numbers of voxels"
        ) from None
    if len(widths) == 1:
        widths *= 3
    if len(widths) != 3 or min(widths) < 0:
        raise OptionsError(
            f"--reflect-padding {value!r} must be one or three whole numbers of voxels >= 0"
        )
    return (widths[0], widths[1], widths[2])


def inference_settings(
    roi_size: str | None,
    sw_batch_size: int | None,
    overlap: float,
    blend: str,
    device: str,
    amp: bool,
    progress: bool,
    nonfinite: str = "error",
    force_modality: bool = False,
    seed: int = 0,
    mirror_axes: str = "",
    reflect_padding: str = "0",
) -> InferenceSettings:
    """The settings of the values of :func:`inference_options` (passed by name).

    Raises:
        OptionsError: A value the settings refuse; the message names each problem.
    """
    from medi2i.settings import InferenceSettings

    return InferenceSettings(  # refuses a bad value with an OptionsError naming it
        roi_size=parse_roi_size(roi_size),
        sw_batch_size=sw_batch_size,
        overlap=overlap,
        blend=blend,
        device=device,
        amp=amp,
        progress=progress,
        nonfinite=nonfinite,
        force_modality=force_modality,
        seed=seed,
        mirror_axes=parse_mirror_axes(mirror_axes),
        reflect_padding=parse_reflect_padding(reflect_padding),
    )


# -- series selection ----------------------------------------------------------------------

_SELECTION_OPTIONS = (
    click.option("--modality", help="Pick the series of this modality (CT, MR, ...)."),
    click.option("--description", help="Pick by a regular expression searched in the description."),
    click.option(
        "--orientation",
        type=click.Choice(["axial", "sagittal", "coronal", "oblique"]),
        help="Pick the series with this slice orientation: axial, sagittal or coronal when "
        "the slice normal lies within 30 degrees of that axis (a stack tilted 20 degrees "
        "off axial is axial; dicom ls shows the tilt), oblique when it lies further from "
        "every axis.",
    ),
    click.option("--series-uid", help="Pick the series with this Series Instance UID."),
    click.option(
        "--largest",
        is_flag=True,
        help=(
            "When several series match, take the largest (most voxels); when several tie "
            "for the largest, the command refuses and lists them: pick one with --series-uid."
        ),
    ),
    click.option(
        "--volume",
        type=click.IntRange(min=1),
        help="Of a series of several volumes (echoes, time points, b-values, or the stacks "
        "of an enhanced multi-frame file), take volume N as dicom ls numbers them.",
    ),
    click.option(
        "--slice-tolerance",
        "slice_tolerance_mm",
        type=click.FloatRange(min=0, min_open=True),
        help="How far (mm) a slice may lie from the regular grid fitted to its series "
        "[default: 0.2 mm or 5 % of the spacing, whichever is larger, at most 25 % of it]. "
        "A value you give is not capped: a stack accepted only because of it is read with "
        "a warning naming its largest deviation, recorded in the provenance.",
    ),
)
_SELECTION_KEYS = (
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
        given = {key: kwargs.pop(key) for key in _SELECTION_KEYS}
        return command(*args, selector=series_selector(**given), **kwargs)

    for option in reversed(_SELECTION_OPTIONS):
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


# -- workflows -----------------------------------------------------------------------------


def overrides_option(
    help: str = "Override a workflow value, e.g. --set training.steps=50 (repeat).",
) -> Callable[[F], F]:
    """``--set KEY=VALUE`` (parameter ``overrides``), repeatable."""
    return click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=help)


def workflow_argument(command: F) -> F:
    """The ``WORKFLOW`` argument (parameter ``workflow_path``) and ``--set`` of every
    workflow command."""
    command = overrides_option()(command)
    return click.argument("workflow_path", metavar="WORKFLOW", type=click.Path(path_type=Path))(
        command
    )


def run_dir_option(
    help: str = "Run folder to create or continue (default: a new one under output.root).",
) -> Callable[[F], F]:
    """``--run-dir``: the run folder of a workflow."""
    return click.option("--run-dir", type=click.Path(path_type=Path, file_okay=False), help=help)
