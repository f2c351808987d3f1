"""How much a network's synthetic CT depends on where the sliding windows fall.

Tiling in a sliding-window prediction means that a voxel's value depends on which
window(s) computed it, not only on the image around it. This script measures that
directly, for committed MR→CT models on a test case (the Q1 test half, or a Q1x split's
test subject with ``--task q1x --split a``):

1. the input MR is put on the model's working grid and preprocessed once, as
   ``medi2i predict`` does;
2. the network runs over it by sliding window (the predict path's engine), once on the
   whole volume and once on the volume cropped by half a window stride at the start of
   every axis, which moves every window border by half a stride;
3. the two outputs are compared voxel by voxel on their common part, in HU, inside the
   body mask: a network whose output depended on the image alone would give the same
   values (0 HU apart, up to float rounding).

It does this for several sliding-window settings (overlap, blending, test-time
mirroring), and once with every instance normalization fed the statistics of the whole
volume instead of each window's own (the test of the cause, see
:data:`GLOBAL_STATISTICS`). It also reports the prediction's roughness (the mean
absolute second difference along each axis inside the body, divided by the reference
CT's, so 1.0 is as rough as real CT) and the checkerboard itself: the amplitude of a
pattern alternating voxel by voxel (:func:`period_two_amplitude`), the pattern a
stride-2 transposed convolution can leave, next to the reference CT's own value.

Usage: python benchmarks/quality/window_dependence.py [--task q1|q1x] [--split a|b]
[--models NAME ...] [--output benchmarks/quality/results] (MEDI2I_DATA_DIR must name the
shared data folder). Results go to ``<task>_window_dependence.{json,md}``. The
whole-volume-statistics run applies to per-window instance normalization only and is
skipped for models without it.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from medi2i_bench.datasets import build_dataset, build_splits
from monai.data.meta_tensor import MetaTensor

from medi2i.data.loading import prepared
from medi2i.engine import SlidingWindowEngine
from medi2i.model_folder import load_model
from medi2i.resample import resample_to_grid
from medi2i.settings import InferenceSettings

REPOSITORY = Path(__file__).resolve().parents[2]
MODELS = {
    "q1": ("regression-unet-3000-steps", "pix2pix-residual-unet-3000-steps"),
    "q1x": ("regression-unet-q1x-a-1250-steps",),
}
"""The models measured by default, per task."""
GLOBAL_STATISTICS = "overlap 0.25, gaussian, whole-volume norm statistics"
"""The experiment that tests the cause: every instance normalization uses the statistics
of the whole volume (recorded in one whole-volume pass) instead of each window's own."""
SETTINGS = (
    ("overlap 0.25, gaussian (default)", 0.25, "gaussian", ()),
    ("overlap 0.5, gaussian", 0.5, "gaussian", ()),
    ("overlap 0.25, constant", 0.25, "constant", ()),
    ("overlap 0.25, gaussian, test-time mirroring along axes 0, 1, 2", 0.25, "gaussian", (0, 1, 2)),
)


def whole_volume_statistics(method: object, volume: torch.Tensor) -> None:
    """Make every instance normalization of the network use the per-channel statistics
    of its input over the whole volume, recorded in one whole-volume pass."""
    network = method.network  # type: ignore[attr-defined]
    norms = [
        m for m in network.modules() if isinstance(m, torch.nn.modules.instancenorm._InstanceNorm)
    ]
    recorded: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def record(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], _: object) -> None:
        x = inputs[0]
        dims = tuple(range(2, x.ndim))
        recorded[id(module)] = (x.mean(dim=dims)[0], x.var(dim=dims, unbiased=False)[0])

    hooks = [m.register_forward_hook(record) for m in norms]
    with torch.inference_mode():
        network.eval()(volume[None].float())
    for hook in hooks:
        hook.remove()
    for module in norms:
        mean, var = recorded[id(module)]

        def fixed(
            x: torch.Tensor, module: torch.nn.Module = module, mean=mean, var=var
        ) -> torch.Tensor:
            return torch.nn.functional.instance_norm(
                x, mean, var, module.weight, module.bias, use_input_stats=False, eps=module.eps
            )

        module.forward = fixed  # type: ignore[method-assign]


def network_output(
    method: object, volume: torch.Tensor, settings: InferenceSettings
) -> torch.Tensor:
    """The network's raw output over ``volume`` (preprocessed, working grid), by window."""
    engine = SlidingWindowEngine(settings=settings)
    condition = method.parse_condition(None)  # type: ignore[attr-defined]
    return engine.run(
        volume,
        lambda windows: method.forward(windows, condition),  # type: ignore[attr-defined]
        modules=[method.network],  # type: ignore[attr-defined]
        default_roi_size=method.roi_size(),  # type: ignore[attr-defined]
    )


def roughness(values: np.ndarray, mask: np.ndarray) -> float:
    """Mean |second difference| along the three axes, over voxels inside ``mask``."""
    totals = []
    for axis in range(3):
        second = np.abs(np.diff(values, n=2, axis=axis))
        inner = np.take(mask, range(1, mask.shape[axis] - 1), axis=axis)
        totals.append(float(second[inner].mean()))
    return float(np.mean(totals))


def period_two_amplitude(values: np.ndarray, mask: np.ndarray, run: int = 8) -> float:
    """The amplitude (HU) of a pattern alternating voxel by voxel, the checkerboard of a
    stride-2 transposed convolution, averaged over the three axes.

    Along each axis the second difference of a pattern ``+c, -c, +c, ...`` is ``∓4c``,
    alternating in sign: multiplied by ``(-1)**i`` it keeps one sign, while smooth
    content gives a small second difference and noise and edges change sign at random.
    So the mean of ``(-1)**i`` times the second difference over a run of ``run`` voxels
    is about ``4c`` where the pattern is, and near zero elsewhere. Runs whose voxels all
    lie inside ``mask`` are used (a run is short enough to keep one phase between
    window borders); the result is the mean of ``|run mean| / 4``. Real CT gives a small
    value too (its noise): compare with the reference's own.
    """
    amplitudes = []
    for axis in range(3):
        moved = np.moveaxis(values.astype(np.float64), axis, -1)
        inside = np.moveaxis(mask, axis, -1)[..., 1:-1]
        second = np.diff(moved, n=2, axis=-1)
        sign = np.where(np.arange(1, moved.shape[-1] - 1) % 2 == 0, 1.0, -1.0)
        signed = second * sign
        usable = (signed.shape[-1] // run) * run
        blocks = signed[..., :usable].reshape(*signed.shape[:-1], -1, run)
        full = inside[..., :usable].reshape(*inside.shape[:-1], -1, run).all(axis=-1)
        amplitudes.append(float(np.abs(blocks.mean(axis=-1))[full].mean() / 4.0))
    return float(np.mean(amplitudes))


def measure(
    model_dir: Path,
    case: object,
    overlap: float,
    blend: str,
    *,
    reference_roughness: float,
    mirror_axes: tuple[int, ...] = (),
    global_statistics: bool = False,
) -> dict[str, float]:
    """Predict ``case`` twice with windows moved by half a stride; see the module's
    docstring for what is returned. ``reference_roughness`` is the reference CT's
    :func:`roughness` in the body, computed once per case."""
    method = load_model(model_dir)
    settings = InferenceSettings(
        device="cpu", progress=False, overlap=overlap, blend=blend, mirror_axes=mirror_axes
    )
    image = case.source.metatensor()  # type: ignore[attr-defined]
    condition = method.parse_condition(None)
    volume = prepared(image, method, condition=condition)
    if global_statistics:
        whole_volume_statistics(method, volume)
    roi = method.roi_size()  # type: ignore[attr-defined]
    shift = [max(1, round(r * (1.0 - overlap) / 2)) for r in roi]
    started = time.perf_counter()
    whole = network_output(method, volume, settings)
    moved = network_output(method, volume[:, shift[0] :, shift[1] :, shift[2] :], settings)
    seconds = time.perf_counter() - started
    half_span = float(method.hounsfield.half_span)  # type: ignore[attr-defined]
    difference = (whole[:, shift[0] :, shift[1] :, shift[2] :] - moved).abs()[0] * half_span
    body = np.asarray(case.mask.array) > 0  # type: ignore[attr-defined]
    on_grid = prepared_mask(case, method, volume)
    inside = on_grid[shift[0] :, shift[1] :, shift[2] :]
    # the full prediction in HU on the reference grid, for the checkerboard measure
    hounsfield = MetaTensor(
        method.hounsfield.to_hounsfield(whole),  # type: ignore[attr-defined]
        affine=volume.affine,
    )
    delivered = resample_to_grid(hounsfield, _grid(case), mode="linear")
    predicted = np.asarray(delivered.as_tensor()[0].numpy())
    reference = np.asarray(case.target.array)  # type: ignore[attr-defined]
    return {
        "window_dependence_mean_hu": float(difference.numpy()[inside].mean()),
        "window_dependence_p99_hu": float(np.percentile(difference.numpy()[inside], 99)),
        "roughness_ratio": roughness(predicted, body) / reference_roughness,
        "checkerboard_hu": period_two_amplitude(predicted, body),
        "mae_hu": float(np.abs(predicted - reference)[body].mean()),
        "seconds_two_passes": seconds,
        "shift_voxels": float(shift[0]),
    }


def prepared_mask(case: object, method: object, volume: torch.Tensor) -> np.ndarray:
    """The benchmark's body mask on the model's working grid (nearest)."""
    from medi2i.data.loading import planned

    mask = case.mask.metatensor()  # type: ignore[attr-defined]
    on_grid = planned(mask, method)  # type: ignore[arg-type]
    values = np.asarray(on_grid.as_tensor()[0].numpy()) >= 0.5
    assert values.shape == tuple(volume.shape[1:])
    return values


def _grid(case: object) -> object:
    from medi2i.grid import Grid

    return Grid.of(case.target.metatensor())  # type: ignore[attr-defined]


def has_window_statistics(model_dir: Path) -> bool:
    """Whether the model's network has instance normalization layers that normalize by
    each window's own statistics (not by running averages kept from training)."""
    network = load_model(model_dir).network  # type: ignore[attr-defined]
    kinds = (torch.nn.InstanceNorm1d, torch.nn.InstanceNorm2d, torch.nn.InstanceNorm3d)
    return any(
        isinstance(module, kinds) and not module.track_running_stats for module in network.modules()
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=REPOSITORY / "benchmarks/quality/results")
    parser.add_argument("--task", choices=sorted(MODELS), default="q1")
    parser.add_argument("--split", default="a", help="Q1x split (a or b).")
    parser.add_argument("--models", nargs="*", help="Committed model folders to measure.")
    parser.add_argument(
        "--only-global", action="store_true", help="Only the whole-volume-statistics runs."
    )
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.task == "q1":
        dataset = build_dataset("q1")
    else:
        dataset = {d.split: d for d in build_splits("q1x")}[args.split]
    (case,) = dataset.test
    body = np.asarray(case.mask.array) > 0
    reference = np.asarray(case.target.array)
    reference_roughness = roughness(reference, body)
    reference_checkerboard = period_two_amplitude(reference, body)
    rows = []
    for name in args.models or MODELS[args.task]:
        folder = REPOSITORY / "benchmarks/quality/models" / name
        runs = [(label, overlap, blend, axes, False) for label, overlap, blend, axes in SETTINGS]
        if has_window_statistics(folder):
            runs.append((GLOBAL_STATISTICS, 0.25, "gaussian", (), True))
        for label, overlap, blend, axes, fixed in runs:
            if args.only_global and not fixed:
                continue
            values = measure(
                folder,
                case,
                overlap,
                blend,
                reference_roughness=reference_roughness,
                mirror_axes=axes,
                global_statistics=fixed,
            )
            rows.append({"model": name, "setting": label, **values})
            print(name, label, json.dumps(values), flush=True)
    args.output.mkdir(parents=True, exist_ok=True)
    record = {
        "task": args.task,
        "case": case.name,
        "reference_checkerboard_hu": reference_checkerboard,
        "rows": rows,
        "machine": f"{platform.platform()}, torch {torch.__version__}",
    }
    stem = f"{args.task}_window_dependence"
    (args.output / f"{stem}.json").write_text(json.dumps(record, indent=2) + "\n")
    title = "Q1" if args.task == "q1" else f"Q1x split {args.split}"
    lines = [
        f"# {title}: how much the synthetic CT depends on where the windows fall",
        "",
        "`benchmarks/quality/window_dependence.py`. Each model predicts the test case "
        "twice, with every window border moved by half a stride; the table gives "
        "how far apart the two predictions are inside the body (HU), the prediction's "
        "roughness against the reference CT's (mean |second difference|; 1.0 is as rough as "
        "real CT), the amplitude of a pattern alternating voxel by voxel (the checkerboard; "
        "`period_two_amplitude`, HU, the reference CT's own in the last line) and the MAE of "
        "the first prediction (body contour off: the raw network).",
        "",
        "| model | sliding window | window dependence, mean (HU) | p99 (HU) "
        "| roughness ratio | checkerboard (HU) | MAE (HU) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['model']} | {row['setting']} | {row['window_dependence_mean_hu']:.2f} | "
            f"{row['window_dependence_p99_hu']:.1f} | {row['roughness_ratio']:.3f} | "
            f"{row['checkerboard_hu']:.2f} | {row['mae_hu']:.2f} |"
        )
    lines += [
        "",
        "The reference CT's own checkerboard measure (its noise): "
        f"{reference_checkerboard:.2f} HU.",
        f"Case {case.name}; {record['machine']}.",
    ]
    (args.output / f"{stem}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
