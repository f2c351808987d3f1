"""The bad-input corpus as a whole.

Its cases live in one module per kind of input (``test_bad_input_volumes.py``,
``_outputs``, ``_dicom``, ``_models``, ``_options``, ``_plugins`` and ``_workflows``),
each run through the command line as a careless user would and held to the promise
stated in ``bad_input_cases.py``. This module checks that the corpus stays large and
that no case name is used twice.
"""

from __future__ import annotations

from tests.test_bad_input_dicom import CASES as DICOM
from tests.test_bad_input_models import CASES as MODELS
from tests.test_bad_input_options import CASES as OPTIONS
from tests.test_bad_input_outputs import CASES as OUTPUTS
from tests.test_bad_input_plugins import CASES as PLUGINS
from tests.test_bad_input_volumes import CASES as VOLUMES
from tests.test_bad_input_workflows import CASES as WORKFLOWS

KINDS = (VOLUMES, OUTPUTS, DICOM, MODELS, OPTIONS, PLUGINS, WORKFLOWS)


def test_the_corpus_is_large_enough() -> None:
    names = [name for cases in KINDS for name in cases]
    assert len(set(names)) == len(names), "a case name is used by two modules"
    assert len(names) >= 60
