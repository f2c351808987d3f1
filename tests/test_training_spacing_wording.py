"""The spacing warning names the silent failure of what the model does: tissue written
as air for MR→CT only (:func:`medi2i.training_spacing.check_input_spacing`)."""

from __future__ import annotations

import pytest

from medi2i.grid import Grid
from medi2i.method import DomainSpec, Method
from medi2i.testing.cycle_example import ExampleCycle
from medi2i.testing.example_methods import FittedStandardization, PointwiseNet
from medi2i.testing.volumes import make_volume
from medi2i.training_spacing import (
    SpacingWarning,
    TrainingSpacing,
    check_input_spacing,
    record_training_spacing,
)

AIR = "(tissue written as air)"
NEUTRAL = "(e.g. intensities or structures of another size than trained on)"
TRAINED = TrainingSpacing(min=(2.0, 2.0, 2.0), max=(2.0, 2.0, 2.0))


def _warning(method: Method, condition: dict[str, object] | None = None) -> str:
    """The warning for a 0.9 x 1.1 x 2 mm input to a model trained at 2 mm."""
    record_training_spacing(method, TRAINED)
    grid = Grid.of(make_volume((8, 8, 8)))
    with pytest.warns(SpacingWarning) as caught:
        check_input_spacing(method, grid, grid, "in.nii.gz", condition=condition)
    return str(caught[0].message)


def _cycle() -> ExampleCycle:
    method = ExampleCycle({"roi_size": (16, 16, 16)})
    method.use_domains(
        [DomainSpec(name="mr", modality="MR"), DomainSpec(name="ct", modality="CT", units="HU")]
    )
    return method


def test_an_mr_to_ct_model_risks_air() -> None:
    message = _warning(PointwiseNet())
    assert AIR in message
    assert NEUTRAL not in message


def test_an_mr_to_mr_model_does_not_speak_of_air() -> None:
    message = _warning(FittedStandardization())
    assert "air" not in message
    assert NEUTRAL in message


def test_a_two_way_model_follows_its_direction() -> None:
    assert AIR in _warning(_cycle(), {"to": "ct"})
    message = _warning(_cycle(), {"to": "mr"})
    assert "air" not in message
    assert NEUTRAL in message


def test_harmonization_between_two_mr_domains_does_not_speak_of_air() -> None:
    method = ExampleCycle({"roi_size": (16, 16, 16)})
    method.use_domains([DomainSpec(name="a", modality="MR"), DomainSpec(name="b", modality="MR")])
    assert "air" not in _warning(method)
