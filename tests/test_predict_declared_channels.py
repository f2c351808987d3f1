"""A method's output must have the channels its output's spec declares.

A plugin method that declared one channel and returned two got as far as the writer,
whose message blamed the user ("write each channel to its own file") and named no
method. The predict path refuses it, naming the method, before anything is written.
"""

from __future__ import annotations

import pytest
import torch
from monai.data.meta_tensor import MetaTensor

from medi2i import (
    InferenceSettings,
    Method,
    NoCondition,
    Options,
    OutputError,
    Task,
    VolumeSpec,
    predict_outputs,
    predict_tensor,
)
from medi2i.testing import make_volume


class Doubled(Method[Options, NoCondition]):
    """Returns the input twice, as two channels."""

    id = "test-doubled"
    tasks = (Task.HARMONIZATION,)
    input_spec = output_spec = VolumeSpec()

    def predict(self, image, context):  # type: ignore[no-untyped-def]
        return torch.cat([image.as_tensor(), image.as_tensor()], dim=0)


class DeclaredTwo(Doubled):
    """Returns two channels and declares them."""

    id = "test-declared-two"
    output_spec = VolumeSpec(channels=2)


SETTINGS = InferenceSettings(device="cpu", progress=False)


def test_more_channels_than_declared_are_refused_naming_the_method() -> None:
    with pytest.raises(OutputError, match=r"'test-doubled' returned 2 channel\(s\).*declares 1"):
        predict_tensor(Doubled(), make_volume((12, 10, 8), seed=1), settings=SETTINGS)


def test_declared_channels_are_delivered() -> None:
    outputs = predict_outputs(DeclaredTwo(), make_volume((12, 10, 8), seed=1), settings=SETTINGS)
    assert outputs[""].shape[0] == 2


class Identity(Doubled):
    """Works channel by channel: returns the input as it came."""

    id = "test-channel-wise"

    def predict(self, image, context):  # type: ignore[no-untyped-def]
        return image.as_tensor().clone()


def test_a_channel_wise_method_returns_the_input_channels() -> None:
    # a method that is not a patch network may be given two channels; returning two is
    # its answer, not a broken promise
    image = make_volume((12, 10, 8), seed=1)
    two = MetaTensor(torch.cat([image.as_tensor(), -image.as_tensor()]), affine=image.affine)
    assert predict_tensor(Identity(), two, settings=SETTINGS).shape[0] == 2


def test_two_channels_given_three_returned_are_refused() -> None:
    image = make_volume((12, 10, 8), seed=1)
    two = MetaTensor(torch.cat([image.as_tensor(), -image.as_tensor()]), affine=image.affine)
    with pytest.raises(OutputError, match=r"returned 4 channel\(s\).*declares 1"):
        predict_tensor(Doubled(), two, settings=SETTINGS)
