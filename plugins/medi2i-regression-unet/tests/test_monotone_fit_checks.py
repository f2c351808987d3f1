"""The monotone mapping refuses to fit what would give a useless model, and says how to
fit it when it was not fitted."""

from __future__ import annotations

import pytest
import torch
from medi2i_regression_unet.monotone import MonotoneMapping
from monai.data.meta_tensor import MetaTensor

from medi2i import (
    FitPair,
    InferenceSettings,
    InputError,
    OptionsError,
    TrainingError,
    predict_tensor,
)
from medi2i.testing import make_volume

SETTINGS = InferenceSettings(device="cpu", amp=False, progress=False)


def ct_of(mr: MetaTensor, values: torch.Tensor | None = None) -> MetaTensor:
    hounsfield = 1000.0 - 2.0 * mr.as_tensor() if values is None else values
    return MetaTensor(hounsfield, affine=mr.affine)


def test_a_source_that_was_not_preprocessed_is_refused() -> None:
    mr = MetaTensor(make_volume().as_tensor() * 300.0 + 200.0, affine=make_volume().affine)
    ct, everywhere = ct_of(make_volume()), torch.ones(mr.shape, dtype=torch.bool)
    method = MonotoneMapping()
    with pytest.raises(InputError, match=r"case 'c': the source is not preprocessed.*preprocess"):
        method.fit_pairs([FitPair("c", mr, ct, everywhere)])
    assert method.curve is None
    method.fit_pairs([FitPair("c", method.preprocess(mr), ct, everywhere)])  # as predict sees it
    assert method.curve is not None


def test_without_normalization_a_raw_source_is_what_predict_sees() -> None:
    mr = make_volume()
    method = MonotoneMapping({"mr_normalization": "none"})
    method.fit_pairs([FitPair("c", mr, ct_of(mr))])
    assert method.curve is not None


def test_a_constant_fitted_mapping_is_refused() -> None:
    mr = make_volume()
    method = MonotoneMapping()
    flat = ct_of(mr, torch.full_like(mr.as_tensor(), 40.0))
    with pytest.raises(TrainingError, match=r"the fitted mapping is constant .* 40 HU"):
        method.fit_pairs([FitPair("c", method.preprocess(mr), flat)])
    assert method.curve is None


def test_predicting_unfitted_says_how_to_fit_it() -> None:
    with pytest.raises(OptionsError, match=r"has not been fitted: fit it with .*fit_pairs"):
        predict_tensor(MonotoneMapping(), make_volume(), settings=SETTINGS)


@pytest.mark.parametrize("given", [torch.zeros((2, 4, 4, 4)), [("c", 1, 2)]])
def test_fit_pairs_refuses_what_is_not_a_list_of_fit_pairs(given: object) -> None:
    with pytest.raises(OptionsError, match=r"fit_pairs takes a list of medi2i\.FitPair"):
        MonotoneMapping({}).fit_pairs(given)  # type: ignore[arg-type]
