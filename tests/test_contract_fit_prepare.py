"""check_method_contract fits a Training.FIT method itself when given no ``prepare``:
an empty fit fails whether or not its author passes ``prepare``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import pytest
import torch
from monai.data.meta_tensor import MetaTensor

from medi2i.method import DataKind, FitPair, Method
from medi2i.testing import check_method_contract
from medi2i.testing.example_methods import FittedStandardization


class FitsNothing(FittedStandardization):
    """A single-domain fit that forgets to store what it computed."""

    id = "fits-nothing-unprepared"

    def fit(self, volumes: object) -> None:
        pass


class OptionalFitForgotten(FittedStandardization):
    """Data kind ``none`` (it may predict unfitted) with a fit that stores nothing."""

    id = "optional-fit-forgotten"
    data = DataKind.NONE
    fits: ClassVar[list[int]] = []

    def fit(self, volumes: object) -> None:
        OptionalFitForgotten.fits.append(len(volumes))  # type: ignore[arg-type]


class OptionalFit(FittedStandardization):
    """Data kind ``none`` with a fit that stores its values."""

    id = "optional-fit"
    data = DataKind.NONE


class PairedStatistics(FittedStandardization):
    """Fits the target's statistics from paired cases (``fit_pairs``)."""

    id = "paired-statistics"
    data = DataKind.PAIRED

    def fit_pairs(self, pairs: Sequence[FitPair]) -> None:
        values = torch.cat([pair.target.as_tensor().flatten() for pair in pairs])
        self.mean, self.std = float(values.mean()), float(values.std())


class DomainStatistics(FittedStandardization):
    """Fits the last domain's statistics from the volumes of two domains."""

    id = "domain-statistics"
    data = DataKind.UNPAIRED

    def fit_domains(self, volumes: Mapping[str, Sequence[MetaTensor]]) -> None:
        values = torch.cat([v.as_tensor().flatten() for v in volumes[self.domain_names[-1]]])
        self.mean, self.std = float(values.mean()), float(values.std())


class CannotFitBlobs(FittedStandardization):
    """A fit that refuses the check's blob volumes."""

    id = "cannot-fit-blobs"

    def fit(self, volumes: object) -> None:
        raise ValueError("no white-matter peak\nin this histogram")


def test_an_empty_fit_fails_without_prepare_too() -> None:
    with pytest.raises(AssertionError, match=r"fitted it with fit\(\) on its own") as caught:
        check_method_contract(FitsNothing)
    assert len(str(caught.value).splitlines()) == 1


def test_an_optional_empty_fit_fails_without_prepare() -> None:
    OptionalFitForgotten.fits.clear()
    with pytest.raises(AssertionError, match="same after the check fitted it"):
        check_method_contract(OptionalFitForgotten)
    assert OptionalFitForgotten.fits == [1]


@pytest.mark.parametrize("method_cls", [FittedStandardization, OptionalFit])
def test_a_real_fit_passes_without_prepare(method_cls: type[Method]) -> None:
    check_method_contract(method_cls)


@pytest.mark.parametrize("method_cls", [PairedStatistics, DomainStatistics])
def test_the_hook_of_the_data_kind_is_called(method_cls: type[Method]) -> None:
    check_method_contract(method_cls)


def test_a_fit_the_blobs_break_asks_for_prepare() -> None:
    with pytest.raises(AssertionError) as caught:
        check_method_contract(CannotFitBlobs)
    message = str(caught.value)
    assert len(message.splitlines()) == 1
    assert "ValueError: no white-matter peak in this histogram" in message
    assert "pass prepare= a callable that fits it" in message
