"""Every workflow in ``workflows/`` runs end to end, shrunk to a few seconds.

Each workflow is run as committed, with ``--set`` overrides that point its data roots at
tiny generated cases in the same layout (the benchmark's file names and case names),
shrink its network and stop after two steps. A new workflow needs a data builder for
each root it names and an entry for its method in :data:`SHRINK`, or this test fails.
"""

from __future__ import annotations

import csv
import inspect
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml

from medi2i.errors import InputError
from medi2i.io import write_volume
from medi2i.io.base import volume_from_array
from medi2i.registry import Registry
from medi2i.synth import Phantom, head_phantom, named_style, thick_slices
from medi2i.training.routes import training_route
from medi2i.workflow import WorkflowError, load_workflow, run_workflow
from medi2i.workflow.demo_data import write_demo_cases, write_unpaired_demo

REPOSITORY = Path(__file__).resolve().parent.parent
WORKFLOWS = REPOSITORY / "workflows"
WORKFLOW_FILES = sorted(WORKFLOWS.glob("*.yaml"))

SHRINK: dict[str, list[str]] = {
    "example-tiny-regression": ["method.options.hidden=4", "method.options.roi_size=[16,16,16]"],
    "regression-unet": ["method.options.filters=[4,8,16]", "method.options.roi_size=[16,16,16]"],
    "pix2pix": [
        "method.options.roi_size=[16,16,16]",
        "method.options.generator_filters=4",
        "method.options.generator_depth=3",
        "method.options.discriminator_filters=4",
        "method.options.discriminator_layers=1",
    ],
    "pix2pix-2.5d": [
        "method.options.roi_size=[16,16,4]",
        "method.options.generator_filters=4",
        "method.options.generator_depth=3",
        "method.options.discriminator_filters=4",
        "method.options.discriminator_layers=1",
    ],
    "srcnn": [
        "method.options.filters=[4,4]",
        "method.options.kernel_sizes=[3,1,3]",
        "method.options.roi_size=[8,8,8]",
        "training.batch_size=2",
    ],
    "example-cycle": ["method.options.hidden=4", "method.options.roi_size=[16,16,16]"],
    "cyclegan": [
        "method.options.roi_size=[16,16,16]",
        "method.options.generator_filters=2",
        "method.options.residual_blocks=1",
        "method.options.outer_kernel=3",
        "method.options.discriminator_filters=2",
        "method.options.discriminator_layers=1",
    ],
    "cyclegan-2.5d": [
        "method.options.roi_size=[16,16,2]",
        "method.options.generator_filters=2",
        "method.options.residual_blocks=1",
        "method.options.outer_kernel=3",
        "method.options.discriminator_filters=2",
        "method.options.discriminator_layers=1",
    ],
    "discogan": [
        "method.options.roi_size=[16,16,16]",
        "method.options.generator_filters=2",
        "method.options.discriminator_filters=2",
    ],
    "edsr": [
        "method.options.features=2",
        "method.options.blocks=1",
        "method.options.roi_size=[8,8,4]",
    ],
    "srgan": [
        "method.options.features=2",
        "method.options.blocks=1",
        "method.options.discriminator_filters=2",
        "method.options.discriminator_layers=1",
        "method.options.content_only_steps=1",
        "method.options.roi_size=[8,8,4]",
    ],
    "smore": [
        "method.options.features=2",
        "method.options.blocks=1",
        "method.options.steps=2",
        "method.options.patch_size=8",
        "method.options.batch_size=2",
    ],
    "interpolation": [],
    "zscore": [],
    "whitestripe": [],
    "nyul": [],
    "domain-intensity-map": ["method.options.quantiles=11"],
    "monotone-mapping": [],
    "unit": [
        "method.options.roi_size=[16,16,16]",
        "method.options.spacing=null",
        "method.options.filters=4",
        "method.options.blocks=1",
        "method.options.discriminator_filters=4",
        "method.options.discriminator_layers=2",
    ],
    "munit": [
        "method.options.roi_size=[16,16,16]",
        "method.options.spacing=null",
        "method.options.filters=4",
        "method.options.blocks=1",
        "method.options.style_downsamples=2",
        "method.options.mlp_features=8",
        "method.options.discriminator_filters=4",
        "method.options.discriminator_layers=2",
    ],
    "stargan": [
        "method.options.roi_size=[16,16,16]",
        "method.options.spacing=null",
        "method.options.generator_filters=4",
        "method.options.residual_blocks=1",
        "method.options.discriminator_filters=4",
        "method.options.discriminator_layers=2",
    ],
}
"""Overrides that make each method's network tiny (none for methods without one)."""

COMMON = [
    "training.steps=2",
    "training.patch_size=null",
    "training.patches_per_volume=1",
    "training.checkpoint_every=2",
    "training.validate_every=null",
    "training.log_every=1",
    "training.num_workers=0",
    "training.device=cpu",
    "training.progress=false",
    "inference.roi_size=null",
    "inference.device=cpu",
    "inference.progress=false",
    "report.cases=1",
    "output.run_id=shrunk",
]

WITHOUT_WORKFLOW = {
    "intensity-inversion": "the reference plugin's template method: no task data to score it on",
    "discogan-2.5d": "runs workflows/q1u_discogan.yaml with --set method.id=discogan-2.5d",
}
"""First-party methods that need no workflow, and why."""

HIGH_RES_SHAPE = (16, 16, 17)
"""Q2's tiny 1 mm grid: 17 slices, so that keeping every 4th or 2nd slice ends on the last."""
PHANTOM_SPACING_MM = (12.0, 12.0, 11.0)
"""Spacing the tiny phantoms are drawn at (the whole head in 16 voxels)."""

Builder = Callable[[Path], None]


# -- tiny data in the benchmarks' layouts -------------------------------------------------------


def write_case(folder: Path, volumes: dict[str, np.ndarray], affine: np.ndarray) -> None:
    for name, values in volumes.items():
        path = folder / f"{name}.nii.gz"
        write_volume(volume_from_array(values, affine, path=path), path)


def phantom(seed: int) -> Phantom:
    return head_phantom(shape=HIGH_RES_SHAPE, spacing_mm=PHANTOM_SPACING_MM, seed=seed)


def q1_cases(seed: int) -> Builder:
    """Q1's one SynthRAD case per split; each split its own phantom (``seed``), as the
    benchmark cuts each split from other slices: a byte-identical copy of a training
    volume in another split is refused."""

    def build(root: Path) -> None:
        write_demo_cases(
            root, count=1, shape=(16, 16, 16), spacing_mm=(10.5, 12.0, 10.5), seed=seed
        )

    return build


def demo_cases(root: Path) -> None:
    write_demo_cases(root, count=6, shape=(16, 16, 16), spacing_mm=(10.5, 12.0, 10.5))


def unpaired_demo(root: Path) -> None:
    write_unpaired_demo(root)


def q2_cases(names: tuple[str, str], *, seed: int) -> Builder:
    def build(root: Path) -> None:
        head = phantom(seed=seed)
        high = np.asarray(head.mr, np.float32)
        affine = np.diag([1.0, 1.0, 1.0, 1.0])  # Q2's reference grid is 1 mm
        mask = np.asarray(head.head_mask, np.uint8)
        for name, step in zip(names, (4, 2), strict=True):
            thick = thick_slices(high, affine=affine, axis=2, slice_spacing_mm=float(step))
            write_case(root / name, {"high_res": high, "mask": mask}, affine)
            write_case(root / name, {"thick_slices": thick.data}, thick.affine)

    return build


def q3_domains(root: Path) -> None:
    head = phantom(seed=3)
    mask = np.asarray(head.head_mask, np.uint8)
    for index, scanner in enumerate(("A", "B", "C")):
        volumes: dict[str, np.ndarray] = {
            "image": head.under_scanner(named_style(scanner), seed=index),
            "mask": mask,
        }
        write_case(root / f"mni152-{scanner}", volumes, head.affine)


def q3_test(root: Path) -> None:
    head = phantom(seed=4)
    volumes: dict[str, np.ndarray] = {
        "source": head.under_scanner(named_style("B"), seed=10),
        "target": head.under_scanner(named_style("A"), seed=11),
        "mask": np.asarray(head.head_mask, np.uint8),
    }
    write_case(root / "colin27-B-to-A", volumes, head.affine)


def q4_cases(names: tuple[str, ...], *, seed: int = 5) -> Builder:
    """Q4's SynthRAD-layout cases (``<part>-<style>/mr|ct|mask``), each style a scanner
    look of one phantom (one per split: ``seed``)."""

    def build(root: Path) -> None:
        head = head_phantom(shape=(16, 16, 16), spacing_mm=(10.5, 12.0, 10.5), seed=seed)
        for name in names:
            style = named_style(name.rsplit("-", 1)[1])
            volumes: dict[str, np.ndarray] = {
                "mr": head.under_scanner(style, seed=len(name)),
                "ct": np.asarray(head.ct, np.float32),
                "mask": np.asarray(head.head_mask, np.uint8),
            }
            write_case(root / name, volumes, head.affine)

    return build


BUILDERS: dict[tuple[str, str], Builder] = {
    ("q1", "train_pairs"): q1_cases(0),
    ("q1", "test"): q1_cases(1),
    ("q1", "validation"): q1_cases(2),
    ("a", "train_pairs"): q1_cases(0),  # Q1x split a (bench-work/q1x/a/...)
    ("a", "validation"): q1_cases(2),
    ("q2", "train_pairs"): q2_cases(("mni152-x4", "mni152-x2"), seed=1),
    ("q2", "test"): q2_cases(("colin27-x4", "colin27-x2"), seed=2),
    ("q3", "train_domains"): q3_domains,
    ("q3", "test"): q3_test,
    ("q4", "train_pairs"): q4_cases(
        tuple(f"{part}-{style}" for part in ("invesalius0051", "lung1-train") for style in "ABC")
    ),
    ("q4", "validation"): q4_cases(tuple(f"lung1-val-{style}" for style in "ABC"), seed=6),
    ("data", "paired-tiny"): demo_cases,
    ("data", "unpaired-tiny"): unpaired_demo,
}
"""Tiny data for each data root the workflows name, by its last two path parts."""


class TinyRoots:
    """Builds each tiny data root once per test module."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __call__(self, written: str, workflow: Path) -> Path:
        key = Path(written).parts[-2:]
        builder = BUILDERS.get((key[0], key[1])) if len(key) == 2 else None
        if builder is None:
            pytest.fail(
                f"{workflow.name} names the data root {written!r}, for which "
                "tests/test_workflows_all.py has no tiny data: add a builder to BUILDERS"
            )
        root = self.folder.joinpath(*key)
        if not root.is_dir():
            builder(root)
        return root


@pytest.fixture(scope="module")
def tiny_roots(tmp_path_factory: pytest.TempPathFactory) -> TinyRoots:
    return TinyRoots(tmp_path_factory.mktemp("roots"))


def root_overrides(path: Path, tiny_roots: TinyRoots) -> list[str]:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    data = raw.get("data")
    evaluation = _get(raw, "evaluation")
    layouts = [
        ("data.layout", data.get("layout") if isinstance(data, dict) else None),
        ("data.validation_data", data.get("validation_data") if isinstance(data, dict) else None),
        ("data.unlabelled_data", data.get("unlabelled_data") if isinstance(data, dict) else None),
        (
            "evaluation.data.layout",
            evaluation.get("layout") if isinstance(evaluation, dict) else None,
        ),
    ]
    overrides = []
    for prefix, layout in layouts:
        if not isinstance(layout, dict):
            continue
        if layout.get("type") == "synthrad":
            overrides.append(f"{prefix}.root={tiny_roots(str(layout['root']), path)}")
        elif layout.get("type") == "folders":
            # each folder lies under a data root: <root parts>/<rest>
            for key, folder in layout["folders"].items():
                parts = Path(folder).parts
                root = tiny_roots(str(Path(*parts[:2])), path)
                overrides.append(f"{prefix}.folders.{key}={root.joinpath(*parts[2:])}")
        elif layout.get("type") == "csv":
            manifest = tiny_manifest(path.parent / str(layout["manifest"]), path, tiny_roots)
            overrides.append(f"{prefix}.manifest={manifest}")
        else:
            pytest.fail(f"{path.name}: tiny data is written for synthrad, folders and csv layouts")
    return overrides


def tiny_manifest(manifest: Path, workflow: Path, tiny_roots: TinyRoots) -> Path:
    """A copy of a workflow's CSV manifest whose paths point into the tiny data roots.

    Each path of the manifest lies in a case folder under a data root,
    ``<root parts>/<case>/<file>``, as the benchmarks' folders are laid out.
    """
    with manifest.open(newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    for row in rows:
        parts = Path(row["path"]).parts
        root = tiny_roots(str(Path(*parts[-4:-2])), workflow)
        row["path"] = str(root.joinpath(*parts[-2:]))
    copy = tiny_roots.folder / "manifests" / f"{workflow.stem}-{manifest.name}"
    copy.parent.mkdir(parents=True, exist_ok=True)
    with copy.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return copy


def _get(raw: dict[str, object], section: str) -> object:
    value = raw.get(section)
    return value.get("data") if isinstance(value, dict) else None


# -- every workflow, shrunk ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry()


def test_there_are_workflows_to_run() -> None:
    assert len(WORKFLOW_FILES) >= 10


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda path: Path(path).stem)
def test_workflow_runs_shrunk(
    path: Path, tiny_roots: TinyRoots, registry: Registry, tmp_path: Path
) -> None:
    method_id = str(yaml.safe_load(path.read_text(encoding="utf-8"))["method"]["id"])
    if method_id not in SHRINK:
        pytest.fail(f"{path.name} uses {method_id!r}: add its tiny settings to SHRINK")
    overrides = [
        *root_overrides(path, tiny_roots),
        *COMMON,
        *SHRINK[method_id],
        f"output.root={tmp_path / 'runs'}",
    ]
    workflow = load_workflow(path, overrides=overrides, registry=registry)
    result = run_workflow(workflow, registry=registry)

    assert result.model_dir is not None
    manifest = json.loads((result.model_dir / "medi2i-model.json").read_text())
    assert manifest["method"]["id"] == method_id
    assert result.metrics_path is not None
    metrics = json.loads(result.metrics_path.read_text())
    assert metrics["cases"], "no case was evaluated"
    for case, values in metrics["cases"].items():
        assert values, case
        # the air MAE is undefined (null) on volumes without air 10 voxels from the mask
        defined = {k: v for k, v in values.items() if not (k == "air_mae" and v is None)}
        assert all(_finite(v) for v in defined.values()), (case, values)
    assert result.report_path is not None
    assert "## Metrics" in result.report_path.read_text()
    route = training_route(registry.method(method_id)(workflow.method.options))
    _check_route(route, result.run_dir, manifest)


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _check_route(route: str, run_dir: Path, manifest: dict[str, object]) -> None:
    log = (run_dir / "logs" / "run.log").read_text()
    if route == "gradient":
        lines = (run_dir / "logs" / "train.jsonl").read_text().splitlines()
        steps = [json.loads(line) for line in lines]
        assert [r["step"] for r in steps if "losses" in r] == [1, 2]
        assert manifest["weights"] is not None
    elif route == "fit":
        assert "train: fitting method" in log
        assert manifest["state"], "the fitted state was not saved"
    else:
        assert "has nothing to train" in log


def test_every_first_party_method_has_a_workflow(registry: Registry) -> None:
    used = {
        str(yaml.safe_load(path.read_text(encoding="utf-8"))["method"].get("id"))
        for path in WORKFLOW_FILES
    }
    first_party = {
        method_id
        for method_id, method_cls in registry.methods.items()
        if Path(inspect.getfile(method_cls)).resolve().is_relative_to(REPOSITORY / "plugins")
    }
    missing = sorted(first_party - used - set(WITHOUT_WORKFLOW))
    assert not missing, f"methods without a workflow in workflows/: {missing}"


# -- fitting on domain data, data.include, source preparation ---------------------------------

DOMAIN_WORKFLOW = """\
data:
  kind: unpaired
  layout: {{type: folders, folders: {{A: {a}, B: {b}}}}}
method:
  id: zscore
  fit_domain: A
inference: {{device: cpu, progress: false}}
evaluation:
  metrics: [mr]
  mask: null
  data:
    kind: paired
    layout: {{type: synthrad, root: {test}, source: source, target: target, mask: mask}}
report: {{figures: false}}
output: {{root: runs}}
"""


def domain_workflow(folder: Path, tiny_roots: TinyRoots) -> tuple[Path, str]:
    """Q3's tiny training images of scanners A and B linked into ``folder/A`` and
    ``folder/B``; the tiny root they come from and :data:`DOMAIN_WORKFLOW` on them."""
    domains = tiny_roots("q3/train_domains", Path("domain.yaml"))
    for scanner in ("A", "B"):
        (folder / scanner).mkdir()
        (folder / scanner / "mni152.nii.gz").symlink_to(
            domains / f"mni152-{scanner}" / "image.nii.gz"
        )
    test = tiny_roots("q3/test", Path("domain.yaml"))
    return domains, DOMAIN_WORKFLOW.format(a=folder / "A", b=folder / "B", test=test)


def test_fit_domain_picks_the_target_domain(
    tmp_path: Path, tiny_roots: TinyRoots, registry: Registry
) -> None:
    domains, text = domain_workflow(tmp_path, tiny_roots)
    (tmp_path / "domain.yaml").write_text(text)
    workflow = load_workflow(tmp_path / "domain.yaml", registry=registry)
    result = run_workflow(workflow, registry=registry, stages=("train",))

    assert result.model_dir is not None
    state = json.loads((result.model_dir / "medi2i-model.json").read_text())["state"]
    expected = registry.method("zscore")()
    expected.fit([domains / "mni152-A" / "image.nii.gz"])
    assert state == pytest.approx(expected.state_values())
    with pytest.raises(WorkflowError, match="fit_domain 'C' is not one of the domains"):
        load_workflow(tmp_path / "domain.yaml", overrides=["method.fit_domain=C"])
    single = ["data.kind=single-domain", "data.layout.folders={image: A}"]
    with pytest.raises(WorkflowError, match="single-domain data has none"):
        load_workflow(tmp_path / "domain.yaml", overrides=single)
    # without fit_domain the run failed only at the train stage, after making its folder
    (tmp_path / "none.yaml").write_text(text.replace("  fit_domain: A\n", ""))
    with pytest.raises(WorkflowError, match=r"line \d+: method.fit_domain: .* set method.fit"):
        load_workflow(tmp_path / "none.yaml", registry=registry)


def test_multi_domain_fit_gets_every_domain_in_label_order(
    tmp_path: Path, tiny_roots: TinyRoots, registry: Registry
) -> None:
    domains, text = domain_workflow(tmp_path, tiny_roots)
    text = text.replace("kind: unpaired", "kind: multi-domain\n  domains: [B, A]")
    text = text.replace("  id: zscore\n  fit_domain: A\n", "  id: domain-intensity-map\n")
    text = text.replace(
        "inference:",
        "  options: {quantiles: 5}\n  condition: {source_domain: B, target_domain: A}\ninference:",
    )
    (tmp_path / "domain.yaml").write_text(text)
    workflow = load_workflow(tmp_path / "domain.yaml", registry=registry)
    result = run_workflow(workflow, registry=registry, stages=("train",))

    assert result.model_dir is not None
    saved = json.loads((result.model_dir / "medi2i-model.json").read_text())
    assert [domain["name"] for domain in saved["domains"]] == ["B", "A"]
    expected = registry.method("domain-intensity-map")({"quantiles": 5})
    expected.fit_domains({s: [domains / f"mni152-{s}" / "image.nii.gz"] for s in ("B", "A")})
    fitted = expected.state_values()
    assert sorted(saved["state"]) == sorted(fitted)
    for name, value in fitted.items():
        assert saved["state"][name] == pytest.approx(value), name
    assert saved["state"]["A.quantile"] != saved["state"]["B.quantile"]


def test_include_keeps_matching_subjects_and_names_a_miss(
    tiny_roots: TinyRoots, registry: Registry
) -> None:
    path = WORKFLOWS / "q3_nyul.yaml"
    root = f"data.layout.root={tiny_roots('q3/train_domains', path)}"
    from medi2i.data.discovery import discover_splits

    workflow = load_workflow(path, overrides=[root, "data.include=['*-[AB]']"])
    assert [c.id for c in discover_splits(workflow.data).train.cases] == ["mni152-A", "mni152-B"]
    workflow = load_workflow(path, overrides=[root, "data.include=[siemens*]"])
    with pytest.raises(InputError, match=r"data.include \['siemens\*'\] matches none of the 3"):
        discover_splits(workflow.data)


def test_prepared_sources_must_land_on_the_target_grid(
    tiny_roots: TinyRoots, registry: Registry, tmp_path: Path
) -> None:
    path = WORKFLOWS / "q2_srcnn.yaml"
    overrides = [
        *root_overrides(path, tiny_roots),
        *COMMON,
        *SHRINK["srcnn"],
        f"output.root={tmp_path}",
        "data.prepare_source.options.align=edges",
    ]
    workflow = load_workflow(path, overrides=overrides, registry=registry)
    with pytest.raises(InputError, match="prepared source of case 'mni152-x2' is not on the grid"):
        run_workflow(workflow, registry=registry, stages=("train",))


# -- the benchmark data's stable paths ---------------------------------------------------------


def test_bench_alias_follows_the_fingerprinted_folder(tmp_path: Path) -> None:
    from medi2i_bench.datasets import link_stable_alias

    first, second = tmp_path / "q1-aaaa", tmp_path / "q1-bbbb"
    for folder in (first, second):
        (folder / "train_pairs").mkdir(parents=True)
        (folder / "marker").write_text(folder.name)
    assert link_stable_alias(first, "q1") == tmp_path / "q1"
    assert (tmp_path / "q1" / "marker").read_text() == "q1-aaaa"
    link_stable_alias(second, "q1")
    assert (tmp_path / "q1" / "marker").read_text() == "q1-bbbb"
    assert not (tmp_path / "q1").readlink().is_absolute()
    (tmp_path / "q2").mkdir()
    assert link_stable_alias(tmp_path / "q2-cccc", "q2") is None  # a real folder is kept
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
