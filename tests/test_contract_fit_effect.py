"""check_method_contract refuses a fitted method whose fit stores nothing it saves."""

from __future__ import annotations

import pytest

from medi2i.method import Method
from medi2i.testing import check_method_contract, make_volume
from medi2i.testing.example_methods import FittedStandardization


class FitsNothing(FittedStandardization):
    """A fit that forgets to store what it computed."""

    id = "fits-nothing"

    def fit(self, volumes: object) -> None:
        pass


def _fit(method: Method) -> None:
    method.fit([make_volume(seed=1)])


def test_a_fit_that_stores_nothing_fails_the_check() -> None:
    with pytest.raises(AssertionError, match="same after prepare") as caught:
        check_method_contract(FitsNothing, prepare=_fit)
    assert len(str(caught.value).splitlines()) == 1


def test_a_fit_that_stores_its_values_passes() -> None:
    check_method_contract(FittedStandardization, prepare=_fit)


def test_a_fitted_method_without_prepare_is_not_asked_to_fit() -> None:
    check_method_contract(FittedStandardization)
