"""The provenance record's output entry holds the output's own condition only when it
has one; the condition the prediction ran under is the record's top-level one."""

from __future__ import annotations

from medi2i.method import Output, VolumeSpec
from medi2i.provenance import output_record

CT = VolumeSpec(modality="CT", units="HU")


def test_an_output_without_its_own_condition_records_none() -> None:
    record = output_record(Output("", CT))
    assert "condition" not in record
    assert record["modality"] == "CT"


def test_an_output_with_its_own_condition_records_it() -> None:
    record = output_record(Output("style-1", CT, condition={"style": 1}))
    assert record["condition"] == {"style": 1}
