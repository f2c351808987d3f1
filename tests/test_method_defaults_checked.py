"""A method's options and condition models must accept their own defaults.

pydantic does not validate defaults, so a plugin's ``steps: int = "ten"`` used to pass
every prediction with the default, be saved into a trained model folder, and be refused
only when that folder was loaded, after the training. It is refused at registration.
"""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict

from medi2i import Method, NoCondition, Options, Registry, Task, VolumeSpec


class WrongDefault(Options):
    steps: int = "ten"  # type: ignore[assignment]
    scale: float = 1.0


class Required(Options):
    gain: float  # no default: given by the user, nothing to check here
    bias: float = 0.0


class Side(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    side: int = "left"  # type: ignore[assignment]


def _method(options: type[BaseModel], condition: type[BaseModel]) -> type[Method]:
    class Plugin(Method[options, condition]):  # type: ignore[valid-type]
        id = "plugin-defaults"
        tasks = (Task.HARMONIZATION,)
        input_spec = output_spec = VolumeSpec()

        def predict(self, image, context):  # type: ignore[no-untyped-def]
            return image

    return Plugin


def test_an_options_default_of_the_wrong_type_is_refused_at_registration() -> None:
    with pytest.raises(TypeError, match=r"'plugin-defaults': the default of Options field steps"):
        _method(WrongDefault, NoCondition).validate_class()


class NaNDefault(Options):
    scale: float = float("nan")  # a float, but Options refuse NaN


def test_a_nan_default_is_told_to_be_finite() -> None:
    with pytest.raises(TypeError, match=r"field scale = nan .*accept \(a finite number, not NaN"):
        _method(NaNDefault, NoCondition).validate_class()


def test_a_condition_default_of_the_wrong_type_is_refused_at_registration() -> None:
    with pytest.raises(TypeError, match=r"the default of Condition field side = 'left'"):
        _method(Options, Side).validate_class()


def test_required_fields_are_not_defaults() -> None:
    _method(Required, NoCondition).validate_class()


def test_every_registered_method_accepts_its_own_defaults() -> None:
    registry = Registry()
    for method_id in registry.methods:
        registry.method(method_id).validate_class()


class LooseOptions(BaseModel):  # a plain pydantic model: ignores unknown keys
    gamma: float = 2.0


class LooseCondition(BaseModel):
    side: str = "left"


def test_options_that_are_not_medi2i_options_are_refused_at_registration() -> None:
    """A plain pydantic model drops ``gama=2`` silently and runs with the default."""
    with pytest.raises(TypeError, match=r"Options model LooseOptions must subclass medi2i"):
        _method(LooseOptions, NoCondition).validate_class()


def test_a_condition_that_ignores_unknown_keys_is_refused_at_registration() -> None:
    with pytest.raises(TypeError, match=r"Condition model LooseCondition must refuse unknown keys"):
        _method(Options, LooseCondition).validate_class()


def test_a_type_parameter_that_is_not_a_pydantic_model_is_refused_when_defined() -> None:
    class PlainOptions:
        gamma = 2.0

    with pytest.raises(TypeError, match=r"Options type parameter .*PlainOptions is not a pydantic"):
        _method(PlainOptions, NoCondition)  # type: ignore[arg-type]
