"""A method hook that returns something other than a torch tensor (a NumPy array, a
forgotten ``return``) is refused in one line naming the method and the hook, not with an
AttributeError from deep inside the core."""

from __future__ import annotations

import pytest
import torch
from monai.data.meta_tensor import MetaTensor

from medi2i import InferenceSettings, Method, NoCondition, Options, Task, VolumeSpec
from medi2i.errors import OutputError
from medi2i.prediction import predict_tensor

SETTINGS = InferenceSettings(device="cpu", amp=False, progress=False)


class NumpyFromPostprocess(Method[Options, NoCondition]):
    id = "test-numpy-postprocess"
    tasks = (Task.HARMONIZATION,)
    input_spec = output_spec = VolumeSpec()

    def predict(self, image, context):  # type: ignore[no-untyped-def]
        return image * 2

    def postprocess(self, output, image, *, domain=None, condition=None):  # type: ignore[no-untyped-def]
        return super().postprocess(output, image).numpy()


class NoneFromPredict(NumpyFromPostprocess):
    id = "test-none-predict"

    def predict(self, image, context):  # type: ignore[no-untyped-def]
        image * 2  # the return forgotten


def _image() -> MetaTensor:
    return MetaTensor(torch.rand(1, 6, 6, 6), affine=torch.eye(4, dtype=torch.float64))


@pytest.mark.parametrize(
    ("method", "message"),
    [
        (NumpyFromPostprocess, r"'test-numpy-postprocess' returned a ndarray from postprocess"),
        (NoneFromPredict, r"'test-none-predict' returned a NoneType from predict"),
    ],
)
def test_a_hook_result_that_is_not_a_tensor_is_refused_in_one_line(
    method: type[Method], message: str
) -> None:
    with pytest.raises(OutputError, match=message):
        predict_tensor(method(), _image(), settings=SETTINGS)
