"""Training sources prepared by another method (``data.prepare_source``), e.g. thick
slices interpolated onto the target's grid before a super-resolution network learns the
rest."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import TYPE_CHECKING

from medi2i.workflow.loader import WorkflowError

if TYPE_CHECKING:
    from medi2i.data.cases import Case, CaseSet
    from medi2i.method import Method
    from medi2i.registry import Registry
    from medi2i.workflow.run_folder import Log, RunFolder
    from medi2i.workflow.schema import Workflow

PREPARED = "prepared"
"""Folder of a run holding the training sources made by ``data.prepare_source``."""


def prepared_sources(
    workflow: Workflow, run: RunFolder, registry: Registry, cases: CaseSet, log: Log
) -> CaseSet:
    """``cases`` with each source replaced by ``data.prepare_source``'s output on it.

    Outputs are written to ``<run>/prepared/`` under a name that changes with the
    source file and the preparation, so a rerun reuses them and a change redoes them.

    Raises:
        WorkflowError: The preparing method learns from data.
        GeometryError: A prepared source is not on its target's grid.
    """
    from medi2i.method import DataKind

    spec = workflow.data.prepare_source
    if spec is None:
        return cases
    preparer = registry.method(spec.method)(spec.options)
    if preparer.data is not DataKind.NONE:
        raise WorkflowError(
            f"data.prepare_source: method {spec.method!r} learns from {preparer.data.value} "
            "data; sources are prepared only by methods with nothing to train (interpolation)"
        )
    log(f"train: preparing the sources of {len(cases.cases)} training cases with {spec.method!r}")
    prepared = tuple(
        _prepared_case(case, preparer, spec.model_dump_json(), workflow, run, registry)
        for case in cases.cases
    )
    return replace(cases, cases=prepared)


def _prepared_case(
    case: Case, preparer: Method, spec: str, workflow: Workflow, run: RunFolder, registry: Registry
) -> Case:
    from medi2i.data.cases import SOURCE, TARGET, Case
    from medi2i.io import read_volume, write_volume
    from medi2i.prediction import predict_tensor
    from medi2i.workflow.evaluation import prediction_stem, require_same_grid

    source = case.images[SOURCE]
    stat = source.stat()
    key = f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{spec}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    path = run.root / PREPARED / f"{prediction_stem(case.id)}-{digest}.nii.gz"
    if not path.is_file():
        readers = list(registry.readers.values())
        output = predict_tensor(
            preparer, read_volume(source, readers=readers), settings=workflow.inference
        )
        reference = read_volume(case.images[TARGET], readers=readers)
        require_same_grid(
            output,
            reference,
            what=f"the prepared source of case {case.id!r}",
            hint="set data.prepare_source's options so that it delivers the target's grid "
            "(for slices kept from the target: its spacing and align: centres)",
        )
        write_volume(output, path, writers=list(registry.writers.values()), overwrite=True)
    return Case(case.id, {**case.images, SOURCE: path}, case.domain, case.condition)
