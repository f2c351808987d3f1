"""What a method returns, checked before anything is written: the range its output
spec declares, and the grid (an output of other sizes, or of the input's sizes in
another order)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from medi2i.errors import OutputError
from medi2i.testing import make_volume


def test_an_output_beyond_its_declared_range_writes_nothing(tmp_path: Path) -> None:
    """A method whose output_spec promises CT's -1024 to 3071 HU but returns 46176 HU
    wrote it (as a DICOM CT too); the promise is now kept or nothing is written."""
    from medi2i import Method, Task, VolumeSpec
    from medi2i.prediction import predict_outputs

    class Overshooting(Method):
        id = "overshooting"
        tasks = (Task.TRANSLATION,)
        input_spec = VolumeSpec(modality="MR")
        output_spec = VolumeSpec(modality="CT", units="HU", value_range=(-1024.0, 3071.0))

        def __init__(self, offset: float) -> None:
            super().__init__()
            self.offset = offset

        def predict(self, image: Any, context: Any) -> torch.Tensor:
            return torch.zeros_like(image.as_tensor()) + torch.linspace(
                -1024.0, 3071.0 + self.offset, image.shape[-1]
            )

    image = make_volume((6, 5, 8))
    predict_outputs(Overshooting(2.0), image)  # within a thousandth of the range: float slack
    with pytest.raises(
        OutputError,
        match=r"values span -1024 to 46176, beyond the range -1024 to 3071 that 'overshooting' "
        r"declares .*clip its output in postprocess",
    ):
        predict_outputs(Overshooting(43105.0), image)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda t: t.permute(0, 3, 2, 1), r"the same sizes in another order: its axes are swapped"),
        (lambda t: t[..., :-1], r"a method that changes the grid must return a MetaTensor"),
    ],
)
def test_an_output_of_another_shape_says_what_the_method_did(change: Any, says: str) -> None:
    from medi2i import Method, Task, VolumeSpec
    from medi2i.prediction import predict_outputs

    class Reshaping(Method):
        id = "reshaping"
        tasks = (Task.TRANSLATION,)
        input_spec = output_spec = VolumeSpec()

        def predict(self, image: Any, context: Any) -> torch.Tensor:
            return change(image.as_tensor())  # type: ignore[no-any-return]

    with pytest.raises(OutputError, match=r"expected spatial shape \(6, 5, 8\)\); " + says):
        predict_outputs(Reshaping(), make_volume((6, 5, 8)))
