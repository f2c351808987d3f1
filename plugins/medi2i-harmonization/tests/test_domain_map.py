"""Tests of the domain intensity map: fit, predict, exact reload, the map's shape."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from medi2i_harmonization.domain_map import DomainIntensityMap, quantile_map
from monai.data.meta_tensor import MetaTensor

from medi2i import InputError, OptionsError, Registry, load_model, predict_tensor, save_model
from medi2i.testing import check_method_contract, make_volume

Phantom = Callable[..., np.ndarray]


def scanner(phantom: Phantom, gain: float, gamma: float, seed: int) -> np.ndarray:
    """The phantom under a monotone scanner curve: ``gain · (x / 1000) ** gamma``."""
    volume = np.clip(phantom(seed=seed), 0.0, None)
    return gain * (volume / 1000.0) ** gamma


@pytest.fixture
def domains(phantom: Phantom) -> dict[str, list[np.ndarray]]:
    return {
        "A": [scanner(phantom, 1000.0, 1.0, seed) for seed in (0, 1)],
        "B": [scanner(phantom, 350.0, 0.6, seed) for seed in (2, 3)],
        "C": [scanner(phantom, 2400.0, 1.5, 4)],
    }


@pytest.mark.parametrize("kind", ["quantile", "zscore"])
def test_meets_the_method_contract(kind: str) -> None:
    volumes = {"A": [make_volume(seed=1)], "B": [make_volume(seed=2) * 0.5]}
    check_method_contract(
        DomainIntensityMap,
        options={"kind": kind},
        condition={"source_domain": "B", "target_domain": "A"},
        prepare=lambda m: m.fit_domains(volumes),
        domains=["A", "B"],
    )


@pytest.mark.parametrize("kind", ["quantile", "zscore"])
def test_fit_predict_and_exact_reload(
    kind: str, domains: dict[str, list[np.ndarray]], phantom: Phantom, tmp_path: Path
) -> None:
    method = DomainIntensityMap({"kind": kind, "quantiles": 101})
    method.fit_domains(domains)
    image = MetaTensor(torch.from_numpy(scanner(phantom, 350.0, 0.6, 9)).float()[None])
    condition = {"source_domain": "B", "target_domain": "A"}

    before = predict_tensor(method, image, condition=condition)
    reloaded = load_model(save_model(method, tmp_path / "model"), registry=Registry())
    after = predict_tensor(reloaded, image, condition=condition)

    assert reloaded.domain_names == ("A", "B", "C")
    assert reloaded.tables == method.tables
    assert reloaded.fitted_volumes == {"A": 2, "B": 2, "C": 1}
    assert torch.equal(before, after)
    head = image[0].numpy() > 0
    reference = scanner(phantom, 1000.0, 1.0, 9)
    error = np.abs(before[0].numpy() - reference)[head].mean()
    assert error < np.abs(image[0].numpy() - reference)[head].mean() / 3


def test_map_is_monotone_and_takes_source_quantiles_to_target(
    domains: dict[str, list[np.ndarray]],
) -> None:
    method = DomainIntensityMap({"quantiles": 11})
    method.fit_domains(domains)
    source, target = np.asarray(method.tables["B"]), np.asarray(method.tables["C"])
    values = np.linspace(-10.0, 2.0 * source[-1], 2001)

    mapped = method.map_values(values, source="B", target="C")

    assert np.all(np.diff(mapped) >= 0)
    np.testing.assert_allclose(method.map_values(source, source="B", target="C"), target)


def test_air_stays_air_and_the_map_keeps_contrast_outside_the_range() -> None:
    source, target = np.array([10.0, 20.0, 40.0]), np.array([100.0, 150.0, 400.0])

    mapped = quantile_map(np.array([0.0, 5.0, 80.0]), source, target)

    assert mapped.tolist() == [0.0, 50.0, 800.0]


def test_ties_are_merged_and_nonpositive_ends_are_constant() -> None:
    mapped = quantile_map(
        np.array([-5.0, 0.0, 1.0, 3.0]), np.array([0.0, 1.0, 1.0, 2.0]), np.array([-1.0, 2, 4, 6])
    )

    assert mapped.tolist() == [-1.0, -1.0, 3.0, 6.0 * 3.0 / 2.0]


def test_unknown_or_missing_domain_is_refused_in_one_line(
    domains: dict[str, list[np.ndarray]],
) -> None:
    method = DomainIntensityMap({"kind": "zscore"})
    method.fit_domains(domains)

    with pytest.raises(OptionsError) as unknown:
        method.parse_condition({"source_domain": "D", "target_domain": "A"})
    with pytest.raises(OptionsError) as missing:
        method.parse_condition({"target_domain": "A"})

    assert "'D'" in str(unknown.value)
    assert "\n" not in str(unknown.value)
    assert "source_domain" in str(missing.value)
    assert "\n" not in str(missing.value)


def test_fit_needs_volumes_by_domain(domains: dict[str, list[np.ndarray]]) -> None:
    method = DomainIntensityMap()

    with pytest.raises(InputError, match="mapping from domain name"):
        method.fit_domains(domains["A"])  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"fit_domains\(") as one_domain:
        method.fit(domains["A"])  # type: ignore[arg-type]
    with pytest.raises(OptionsError, match="two or more"):
        method.fit_domains({"A": domains["A"]})
    with pytest.raises(InputError, match="'B' has no volume"):
        method.fit_domains({"A": domains["A"], "B": []})

    assert "\n" not in str(one_domain.value)


def test_an_unfitted_domain_map_says_how_to_fit_it() -> None:
    method = DomainIntensityMap({})
    with pytest.raises(OptionsError, match=r"not fitted: call method\.fit_domains"):
        method.map_values(np.arange(64.0).reshape(4, 4, 4), source="A", target="B")
