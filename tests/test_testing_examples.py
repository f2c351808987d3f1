"""The domain examples of medi2i.testing: the two-way CycleGAN-pattern method, the
StarGAN-pattern multi-domain method, their image pool and their toy data sets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import medi2i
from medi2i import ImagePool
from medi2i.errors import OptionsError
from medi2i.intensity import HounsfieldScale
from medi2i.io import read_volume
from medi2i.method import DataKind, DomainSpec
from medi2i.prediction import predict_outputs, predict_tensor
from medi2i.settings import InferenceSettings
from medi2i.testing import (
    MULTI_DOMAINS,
    UNPAIRED_DOMAINS,
    check_method_contract,
    isolated_registry,
    make_volume,
    trainable_examples,
    write_multi_domain_cases,
    write_unpaired_cases,
)
from medi2i.testing.cycle_example import ExampleCycle
from medi2i.testing.multi_domain_example import ExampleStar

QUIET = InferenceSettings(device="cpu", amp=False, progress=False)
SMALL = {"hidden": 4}


def cycle(**options: object) -> ExampleCycle:
    method = ExampleCycle({**SMALL, **options})
    method.use_domains(UNPAIRED_DOMAINS)
    return method


def star() -> ExampleStar:
    method = ExampleStar(SMALL)
    method.use_domains(MULTI_DOMAINS)
    return method


# -- both examples -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method_cls", "condition"),
    [
        (ExampleCycle, None),
        (ExampleCycle, {"to": "mr"}),
        (ExampleStar, None),
        (ExampleStar, {"target_domain": "scanner-b", "source_domain": "scanner-a"}),
    ],
    ids=["cycle-to-ct", "cycle-to-mr", "star-every-domain", "star-one-domain"],
)
def test_the_examples_keep_the_method_contract(
    method_cls: medi2i.MethodClass, condition: dict[str, object] | None
) -> None:
    check_method_contract(method_cls, options=SMALL, condition=condition)


def test_the_examples_plugin_registers_both() -> None:
    registry = isolated_registry(trainable_examples)

    assert registry.method("example-cycle") is ExampleCycle
    assert registry.method("example-star") is ExampleStar
    assert registry.method("example-tiny-regression") is trainable_examples.TinyRegression


def test_the_examples_cite_their_papers() -> None:
    assert "Zhu" in ExampleCycle.paper
    assert "2017" in ExampleCycle.paper
    assert "Choi" in ExampleStar.paper
    assert "2018" in ExampleStar.paper
    assert ExampleCycle.describe().data is DataKind.UNPAIRED
    assert ExampleStar.describe().data is DataKind.MULTI_DOMAIN


# -- the two-way example ---------------------------------------------------------------------


def test_the_direction_decides_input_domain_and_output_spec() -> None:
    method = cycle()
    to_ct, to_mr = method.parse_condition(None), method.parse_condition({"to": "mr"})

    assert method.input_domain(to_ct) == "mr"
    assert method.input_domain(to_mr) == "ct"
    (ct_output,) = method.outputs(to_ct)
    (mr_output,) = method.outputs(to_mr)
    assert (ct_output.domain, ct_output.spec.modality, ct_output.spec.units) == ("ct", "CT", "HU")
    assert (mr_output.domain, mr_output.spec.modality) == ("mr", "MR")
    assert mr_output.condition == {"to": "mr"}


def test_an_unknown_direction_names_the_domains() -> None:
    with pytest.raises(OptionsError, match=r"'to' must be one of its domains: \['mr', 'ct'\]"):
        cycle().parse_condition({"to": "pet"})


def test_an_untrained_two_way_method_says_it_has_no_domains() -> None:
    with pytest.raises(OptionsError, match="has no domains"):
        predict_tensor(ExampleCycle(SMALL), make_volume((16, 16, 16)), settings=QUIET)


def test_each_domain_is_scaled_its_own_way() -> None:
    method = cycle(percentiles=(0.0, 100.0))
    mr = make_volume((16, 16, 16))
    ct = make_volume((16, 16, 16), seed=3) * 2.0 - 1000.0

    mr_prepared = method.preprocess(mr, domain="mr")
    ct_prepared = method.preprocess(ct, domain="ct")

    assert float(mr_prepared.max()) == pytest.approx(1.0)
    assert torch.allclose(ct_prepared, HounsfieldScale().to_network(ct))
    back = method.postprocess(ct_prepared, ct_prepared, domain="ct")
    assert torch.allclose(back, ct.clamp(-1024.0, 3071.0), atol=1e-2)
    assert torch.equal(method.postprocess(mr_prepared, mr_prepared, domain="mr"), mr_prepared)


def test_a_ct_to_mr_prediction_is_delivered_as_mr() -> None:
    method = cycle()
    ct = make_volume((16, 16, 16)) * 2.0 - 1000.0

    output = predict_tensor(method, ct, settings=QUIET, condition={"to": "mr"})

    assert output.meta["medi2i.output.modality"] == "MR"
    assert float(output.abs().max()) <= 1.0  # MR stays in the network's arbitrary units
    to_ct = predict_tensor(method, make_volume((16, 16, 16)), settings=QUIET)
    assert to_ct.meta["medi2i.output.units"] == "HU"
    assert float(to_ct.min()) >= -1024.0
    assert float(to_ct.max()) <= 3071.0


def test_the_image_pools_are_the_training_state() -> None:
    method = cycle(pool_size=3)
    method.pools["a"].query(torch.ones(2, 1, 4, 4, 4))
    state = method.training_state()

    fresh = cycle(pool_size=3)
    fresh.load_training_state(state)

    assert [len(fresh.pools[k].images) for k in ("a", "b")] == [2, 0]
    assert torch.equal(fresh.pools["a"].images[0], torch.ones(1, 4, 4, 4))
    with pytest.raises(medi2i.Medi2iError, match="pool_a"):
        fresh.load_training_state({"pool_b": []})


# -- the image pool --------------------------------------------------------------------------


def test_the_pool_returns_new_images_while_it_fills() -> None:
    pool = ImagePool(4)
    images = torch.arange(3.0).reshape(3, 1, 1, 1, 1)

    assert torch.equal(pool.query(images), images)
    assert len(pool.images) == 3


def test_a_full_pool_mixes_in_stored_images_reproducibly() -> None:
    def run() -> list[float]:
        torch.manual_seed(5)
        pool = ImagePool(2)
        pool.query(torch.zeros(2, 1, 1, 1, 1))
        return [float(v) for v in pool.query(torch.ones(8, 1, 1, 1, 1)).flatten()]

    first = run()
    assert first == run()
    assert 0.0 in first  # some stored
    assert 1.0 in first  # some new


def test_a_pool_of_size_zero_passes_images_through() -> None:
    pool = ImagePool(0)
    images = torch.randn(2, 1, 2, 2, 2)

    returned = pool.query(images.requires_grad_())
    assert torch.equal(returned, images)
    assert not returned.requires_grad  # the discriminator's update never reaches the generator
    assert pool.state() == []


# -- the multi-domain example ----------------------------------------------------------------


def test_without_a_target_every_domain_is_a_named_output() -> None:
    method = star()

    outputs = predict_outputs(method, make_volume((16, 16, 16)), settings=QUIET)

    assert sorted(outputs) == sorted(spec.name for spec in MULTI_DOMAINS)
    for name, volume in outputs.items():
        assert volume.meta["medi2i.output.name"] == name
    declared = method.outputs(method.parse_condition(None))
    assert [(o.name, o.domain) for o in declared] == [(d.name, d.name) for d in MULTI_DOMAINS]


def test_a_target_domain_gives_one_unnamed_output_of_that_domain() -> None:
    method = star()
    image = make_volume((16, 16, 16))

    one = predict_outputs(method, image, settings=QUIET, condition={"target_domain": "scanner-c"})
    every = predict_outputs(method, image, settings=QUIET)

    assert list(one) == [""]
    assert torch.allclose(one[""], every["scanner-c"])
    assert not torch.allclose(every["scanner-a"], every["scanner-c"])


def test_an_unknown_target_domain_names_the_domains() -> None:
    with pytest.raises(OptionsError, match="target_domain must be one of its domains"):
        star().parse_condition({"target_domain": "scanner-z"})


def test_the_networks_are_sized_from_the_domains() -> None:
    untrained = ExampleStar(SMALL)
    assert untrained.state_tensors() == {}
    with pytest.raises(OptionsError, match="has no domains"):
        _ = untrained.network

    two = ExampleStar(SMALL)
    two.use_domains(["x", "y"])
    assert two.discriminator.classes.out_channels == 2
    assert star().discriminator.classes.out_channels == len(MULTI_DOMAINS)


# -- toy data of domains ---------------------------------------------------------------------


def test_unpaired_cases_are_mr_and_ct_in_hounsfield_units(tmp_path: Path) -> None:
    cases = write_unpaired_cases(tmp_path, per_domain=2, shape=(12, 12, 12))

    assert cases.kind is DataKind.UNPAIRED
    assert cases.domains == ("mr", "ct")
    assert cases.domain_specs == UNPAIRED_DOMAINS
    ct = [read_volume(c.images["image"]) for c in cases.cases if c.domain == "ct"]
    mr = [read_volume(c.images["image"]) for c in cases.cases if c.domain == "mr"]
    assert len(ct) == len(mr) == 2
    assert all(float(v.min()) < -500.0 for v in ct)
    assert all(float(v.min()) > 0.0 for v in mr)
    assert not torch.equal(mr[0], mr[1])  # different subjects


def test_multi_domain_cases_differ_in_intensity_response(tmp_path: Path) -> None:
    specs = [DomainSpec(name=n, modality="MR") for n in ("p", "q", "r", "s")]
    cases = write_multi_domain_cases(tmp_path, domains=specs, per_domain=1, shape=(12, 12, 12))

    assert cases.domains == ("p", "q", "r", "s")
    medians = [float(np.median(read_volume(c.images["image"]).numpy())) for c in cases.cases]
    assert len(set(np.round(medians, 3))) == 4


def test_writers_refuse_the_wrong_number_of_domains(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="two domains"):
        write_unpaired_cases(tmp_path, domains=MULTI_DOMAINS)
    with pytest.raises(ValueError, match="two or more"):
        write_multi_domain_cases(tmp_path, domains=MULTI_DOMAINS[:1])


def test_named_outputs_are_written_beside_the_output_path(tmp_path: Path) -> None:
    from medi2i.model_folder import save_model
    from medi2i.plugins import load_plugins
    from medi2i.prediction import predict_all
    from medi2i.registry import Registry
    from medi2i.testing import write_volume_file

    plugins = load_plugins()  # the built-in readers and writers, and the examples
    plugins.manager.register(trainable_examples, name="trainable-examples")
    model = save_model(star(), tmp_path / "model")
    source = write_volume_file(tmp_path, "in.nii.gz", shape=(16, 16, 16))

    written = predict_all(
        source,
        tmp_path / "out.nii.gz",
        model=model,
        settings=QUIET,
        registry=Registry(plugins),
    )

    assert written == {d.name: tmp_path / f"out_{d.name}.nii.gz" for d in MULTI_DOMAINS}
    assert all(path.is_file() for path in written.values())
    provenance = json.loads((tmp_path / "out_scanner-b.provenance.json").read_text())
    assert "scanner-b" in json.dumps(provenance)
