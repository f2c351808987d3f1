"""Predicting many volumes: one engine whose out-of-memory back-off carries over, shares
of the jobs per rank, resume."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from monai.data.meta_tensor import MetaTensor

from medi2i.engine import SlidingWindowEngine
from medi2i.method import Method, PredictContext, Task, VolumeSpec
from medi2i.prediction import predict_tensor
from medi2i.settings import InferenceSettings

SETTINGS = InferenceSettings(device="cpu", progress=False, sw_batch_size=4, roi_size=(8, 8, 8))


class FitsOneWindow(Method):
    """Doubles the volume window by window; the device "fits" one window at a time, so a
    batch of more raises CUDA's out-of-memory error. Records every batch size it is given."""

    id = "test-fits-one-window"
    tasks = (Task.TRANSLATION,)
    input_spec = VolumeSpec(modality="MR")
    output_spec = VolumeSpec(modality="CT", units="HU")
    batches: ClassVar[list[list[int]]] = []
    """Batch sizes seen, one list per volume."""

    def predict(self, image: MetaTensor, context: PredictContext) -> torch.Tensor:
        seen: list[int] = []
        FitsOneWindow.batches.append(seen)

        def windows(batch: torch.Tensor) -> torch.Tensor:
            seen.append(int(batch.shape[0]))
            if batch.shape[0] > 1:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
            return batch * 2.0

        return context.engine.run(image.as_tensor(), windows, default_roi_size=(8, 8, 8))


def _volume(seed: int) -> MetaTensor:
    values = np.random.default_rng(seed).normal(100.0, 20.0, (1, 16, 16, 16))
    return MetaTensor(torch.from_numpy(values.astype(np.float32)), affine=torch.eye(4))


def test_one_engine_remembers_the_out_of_memory_back_off_across_volumes() -> None:
    FitsOneWindow.batches.clear()
    engine = SlidingWindowEngine(settings=SETTINGS)
    for seed in range(3):
        output = predict_tensor(FitsOneWindow(), _volume(seed), settings=SETTINGS, engine=engine)
        torch.testing.assert_close(output.as_tensor(), 2.0 * _volume(seed).as_tensor())
    first, *later = FitsOneWindow.batches
    assert max(first) == 4  # the first volume ran out of memory at 4 and 2 windows
    assert all(set(seen) == {1} for seen in later), later  # the others never did
    assert engine.sw_batch_size == 1
    assert engine.settings.sw_batch_size == 4


def test_without_an_engine_every_volume_starts_from_the_settings() -> None:
    FitsOneWindow.batches.clear()
    for seed in range(2):
        predict_tensor(FitsOneWindow(), _volume(seed), settings=SETTINGS)
    assert [max(seen) for seen in FitsOneWindow.batches] == [4, 4]
