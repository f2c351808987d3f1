"""On a CUDA device: mixed precision, a real out-of-memory back-off and repeatable
predictions. Marked ``gpu`` and skipped without CUDA; run with ``make test-gpu``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data.meta_tensor import MetaTensor

from medi2i.engine import SlidingWindowEngine
from medi2i.prediction import predict_tensor
from medi2i.registry import Registry
from medi2i.settings import InferenceSettings

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _network_method() -> object:
    torch.manual_seed(0)
    method = Registry().method("srcnn")(
        {"filters": [16, 8], "kernel_sizes": [5, 1, 3], "roi_size": [32, 32, 32]}
    )
    return method


def _mr(shape: tuple[int, int, int] = (70, 64, 50)) -> MetaTensor:
    data = np.random.default_rng(0).normal(300.0, 60.0, (1, *shape)).astype(np.float32)
    return MetaTensor(torch.from_numpy(data), affine=torch.eye(4, dtype=torch.float64))


def test_mixed_precision_on_cuda_is_close_to_float32_on_the_cpu() -> None:
    method = _network_method()
    image = _mr()
    cpu = predict_tensor(method, image, settings=InferenceSettings(device="cpu", progress=False))
    amp = predict_tensor(
        method, image, settings=InferenceSettings(device="cuda", amp=True, progress=False)
    )
    assert amp.dtype == torch.float32
    assert amp.device.type == "cpu"
    scale = float(cpu.abs().max())
    # float16 carries about 3 significant digits
    assert float((amp - cpu).abs().max()) <= 1e-2 * scale


def test_a_real_out_of_memory_error_halves_the_window_batch() -> None:
    torch.cuda.empty_cache()
    free, _ = torch.cuda.mem_get_info()
    per_window = free // 3  # a batch of 4 cannot fit, one of 2 can (with room to spare)

    def greedy(windows: torch.Tensor) -> torch.Tensor:
        ballast = torch.empty(int(per_window) * windows.shape[0], dtype=torch.uint8, device="cuda")
        del ballast
        return windows * 2.0

    engine = SlidingWindowEngine(
        settings=InferenceSettings(device="cuda", sw_batch_size=4, roi_size=(16, 16, 16))
    )
    image = torch.rand(1, 40, 40, 40)
    output = engine.run(image, greedy)
    assert engine.sw_batch_size in (1, 2)
    torch.testing.assert_close(output, image * 2.0)


def test_cuda_predictions_repeat_exactly() -> None:
    method = _network_method()
    image = _mr()
    settings = InferenceSettings(device="cuda", amp=False, progress=False)
    first = predict_tensor(method, image, settings=settings)
    second = predict_tensor(method, image, settings=settings)
    assert torch.equal(first, second)


def test_windows_blend_on_the_gpu_when_there_is_room_and_match_the_cpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from medi2i import window_blend

    chosen: list[str] = []
    accumulators = window_blend._accumulators

    def spy(*args: object, **kwargs: object) -> tuple[torch.Tensor, torch.Tensor | None]:
        output, count = accumulators(*args, **kwargs)  # type: ignore[arg-type]
        chosen.append(output.device.type)
        return output, count

    monkeypatch.setattr(window_blend, "_accumulators", spy)
    volume = torch.randn(1, 1, 70, 64, 50, generator=torch.Generator().manual_seed(0))
    args = {"batch_size": 4, "overlap": 0.5, "mode": "gaussian", "sigma_scale": 0.125}

    def net(windows: torch.Tensor) -> torch.Tensor:
        return windows * 2.0 + 1.0

    gpu = window_blend.blend_windows(volume, net, (32, 32, 32), device=torch.device("cuda"), **args)
    cpu = window_blend.blend_windows(volume, net, (32, 32, 32), device=torch.device("cpu"), **args)
    assert chosen == ["cuda", "cpu"]
    assert gpu.device.type == "cpu"
    torch.testing.assert_close(gpu, cpu, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("order", ["c", "x-fastest"])
def test_the_result_comes_back_through_pinned_buffers_unchanged(
    monkeypatch: pytest.MonkeyPatch, order: str
) -> None:
    from medi2i import window_blend

    monkeypatch.setattr(window_blend, "TRANSFER_CHUNK_BYTES", 3 * 2 * 40 * 30 * 4)  # 3 rows
    output = torch.randn(1, 2, 50, 40, 30, device="cuda")
    reference = torch.zeros(1, 1, 50, 40, 30)
    if order == "x-fastest":
        reference = torch.zeros(1, 1, 30, 40, 50).permute(0, 1, 4, 3, 2)
    host = window_blend._to_host(output, reference)
    assert host.device.type == "cpu"
    assert torch.equal(host, output.cpu())
    assert (host.stride(2) < host.stride(4)) == (order == "x-fastest")
