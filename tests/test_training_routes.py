"""Fitting methods on their training data: target-domain volumes, whole paired cases, or
the volumes of every domain."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data.meta_tensor import MetaTensor

from medi2i import DataKind, FitPair, Medi2iError, Method, Task, Training, VolumeSpec
from medi2i.data.cases import IMAGE, Case, CaseSet
from medi2i.errors import GeometryError, InputError, TrainingError
from medi2i.io import read_volume, write_volume
from medi2i.method import StateValue
from medi2i.testing import make_volume
from medi2i.testing.trainable_examples import write_paired_cases
from medi2i.training.routes import fit_domains_on, fit_pair, fit_pairs_on, training_route


class PairRecorder(Method):
    """Records the pairs it is fitted on; doubles sources and adds 1 to targets."""

    id = "pair-recorder"
    tasks = (Task.TRANSLATION,)
    data = DataKind.PAIRED
    training = Training.FIT
    input_spec = output_spec = VolumeSpec()

    def __init__(self) -> None:
        super().__init__()
        self.pairs: list[FitPair] = []

    def preprocess(
        self, image: MetaTensor, *, domain: str | None = None, condition: object = None
    ) -> MetaTensor:
        return image * 2.0

    def preprocess_target(self, target: MetaTensor) -> MetaTensor:
        return target + 1.0

    def fit_pairs(self, pairs: Sequence[FitPair]) -> None:
        self.pairs = list(pairs)

    def state_values(self) -> dict[str, StateValue]:
        return {"pairs": len(self.pairs)}

    def load_state_values(self, values: Mapping[str, StateValue]) -> None:
        pass

    def predict(self, image: MetaTensor, context: object) -> torch.Tensor:
        return image


def test_a_paired_fitted_method_takes_the_fit_route() -> None:
    assert training_route(PairRecorder()) == "fit"


def test_paired_cases_reach_fit_pairs_as_predict_and_training_see_them(tmp_path: Path) -> None:
    cases = write_paired_cases(tmp_path, count=2).cases
    method = PairRecorder()

    fit_pairs_on(method, cases)

    assert [pair.case_id for pair in method.pairs] == ["case-0", "case-1"]
    for pair, case in zip(method.pairs, cases, strict=True):
        source = read_volume(case.images["source"]).as_tensor()
        target = read_volume(case.images["target"]).as_tensor()
        mask = read_volume(case.images["mask"]).as_tensor() > 0
        torch.testing.assert_close(pair.source.as_tensor(), source * 2.0)
        torch.testing.assert_close(pair.target.as_tensor(), target + 1.0)
        assert pair.mask is not None
        assert pair.mask.dtype == torch.bool
        assert torch.equal(pair.mask, mask)


def test_a_fit_that_keeps_nothing_is_refused(tmp_path: Path) -> None:
    """Its model folder would predict as the unfitted method, saying nothing."""

    class Forgetful(PairRecorder):
        id = "forgetful"
        state_values = Method.state_values

    with pytest.raises(TrainingError, match="'forgetful' was fitted but keeps nothing"):
        fit_pairs_on(Forgetful(), write_paired_cases(tmp_path, count=1).cases)


def test_a_case_without_a_mask_gives_none(tmp_path: Path) -> None:
    cases = write_paired_cases(tmp_path, count=1, mask=False).cases
    method = PairRecorder()
    fit_pairs_on(method, cases)
    assert method.pairs[0].mask is None


def test_a_mask_on_another_grid_is_refused() -> None:
    image = make_volume((12, 10, 8))
    mask = MetaTensor(torch.ones(1, 12, 10, 9), affine=image.affine)
    with pytest.raises(GeometryError, match="resample the mask"):
        fit_pair(PairRecorder(), "c", source=image, target=image, mask=mask)


def test_a_method_without_fit_pairs_says_so() -> None:
    class Plain(PairRecorder):
        id = "plain-pairs"
        fit_pairs = Method.fit_pairs

    image = make_volume((8, 8, 8))
    pair = FitPair("c", image, image, torch.from_numpy(np.ones((1, 8, 8, 8), bool)))
    with pytest.raises(Medi2iError, match="does not fit on paired cases"):
        Plain().fit_pairs([pair])


class DomainRecorder(Method):
    """Records the volumes it is fitted on, by domain; preprocessing adds 1."""

    id = "domain-recorder"
    tasks = (Task.HARMONIZATION,)
    data = DataKind.MULTI_DOMAIN
    training = Training.FIT
    input_spec = output_spec = VolumeSpec()

    def __init__(self) -> None:
        super().__init__()
        self.volumes: dict[str, list[MetaTensor]] = {}

    def preprocess(
        self, image: MetaTensor, *, domain: str | None = None, condition: object = None
    ) -> MetaTensor:
        return image + 1.0

    def fit_domains(self, volumes: Mapping[str, Sequence[MetaTensor]]) -> None:
        self.volumes = {name: list(given) for name, given in volumes.items()}

    def state_values(self) -> dict[str, StateValue]:
        return {name: len(given) for name, given in self.volumes.items()}

    def predict(self, image: MetaTensor, context: object) -> torch.Tensor:
        return image


def domain_cases(tmp_path: Path, domains: Sequence[str], order: tuple[str, ...]) -> CaseSet:
    cases = []
    for index, domain in enumerate(domains):
        path = tmp_path / f"{index}-{domain}.nii.gz"
        volume = make_volume(shape=(6, 6, 6), seed=index)
        write_volume(volume, path)
        cases.append(Case(id=f"case-{index}", images={IMAGE: path}, domain=domain))
    return CaseSet(kind=DataKind.MULTI_DOMAIN, cases=tuple(cases), domains=order)


def test_every_domain_reaches_fit_domains_in_label_order_as_predict_sees_it(
    tmp_path: Path,
) -> None:
    cases = domain_cases(tmp_path, ["A", "B", "A"], order=("B", "A"))
    method = DomainRecorder()
    fit_domains_on(method, cases)

    assert method.domain_names == ("B", "A")
    assert list(method.volumes) == ["B", "A"]
    assert [len(method.volumes[name]) for name in ("A", "B")] == [2, 1]
    raw = read_volume(cases.cases[1].images[IMAGE])
    assert torch.allclose(method.volumes["B"][0].as_tensor(), raw.as_tensor() + 1.0)


def test_a_domain_without_volumes_and_paired_data_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no training volume of domain 'C'"):
        fit_domains_on(DomainRecorder(), domain_cases(tmp_path, ["A", "B"], ("A", "B", "C")))
    paired = CaseSet(kind=DataKind.PAIRED, cases=())
    with pytest.raises(InputError, match="needs unpaired or multi-domain data, not paired"):
        fit_domains_on(DomainRecorder(), paired)
