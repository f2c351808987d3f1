"""A method object passed where medi2i.predict takes a method id or a model path is
refused with what to pass instead, not with its repr or a TypeError about paths."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import medi2i
from medi2i import OptionsError
from medi2i.registry import Registry
from medi2i.testing import make_volume


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "in.nii.gz"
    values = np.random.default_rng(0).normal(400.0, 100.0, (8, 8, 8)).astype(np.float32)
    nib.save(nib.Nifti1Image(values, np.eye(4)), path)
    return path


@pytest.mark.parametrize("as_class", [False, True], ids=["instance", "class"])
def test_a_method_object_for_method_names_its_id_and_predict_tensor(
    registry: Registry, source: Path, as_class: bool
) -> None:
    method_cls = registry.method("example-self-rescaling")
    given = method_cls if as_class else method_cls()
    with pytest.raises(OptionsError) as raised:
        medi2i.predict(source, source.with_name("out.nii.gz"), method=given, registry=registry)  # type: ignore[arg-type]
    message = str(raised.value)
    assert message.startswith("method= takes the id of a registered method, a str")
    assert "pass method='example-self-rescaling'" in message
    assert "medi2i.predict_tensor(method, medi2i.read_volume(SOURCE))" in message
    assert "object at 0x" not in message


def test_a_method_object_for_model_says_model_takes_a_path(
    registry: Registry, source: Path
) -> None:
    method = registry.method("example-self-rescaling")()
    with pytest.raises(OptionsError, match=r"^model= takes the path of a trained-model folder"):
        medi2i.predict(source, source.with_name("out.nii.gz"), model=method, registry=registry)  # type: ignore[arg-type]
    with pytest.raises(OptionsError, match=r"not a \w+ object; .*predict_tensor"):
        medi2i.load_model(method)  # type: ignore[arg-type]
    assert sorted(p.name for p in source.parent.iterdir()) == ["in.nii.gz"]


def test_a_method_object_given_as_the_source_says_where_it_goes(
    registry: Registry, tmp_path: Path
) -> None:
    method = registry.method("example-self-rescaling")()
    with pytest.raises(OptionsError, match=r"takes the input file's path first.*method="):
        medi2i.predict(method, tmp_path / "out.nii.gz", registry=registry)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_a_volume_given_as_the_source_is_sent_to_predict_tensor(
    registry: Registry, tmp_path: Path
) -> None:
    volume = make_volume((8, 8, 8))
    with pytest.raises(OptionsError, match="predict_tensor"):
        medi2i.predict(volume, tmp_path / "out.nii.gz", method="example-self-rescaling")  # type: ignore[arg-type]


def test_arguments_of_the_wrong_type_get_a_medi2i_error_saying_what_to_pass() -> None:
    # each raised a plain TypeError, ValueError or AttributeError from deep inside
    import torch
    from monai.data.meta_tensor import MetaTensor

    from medi2i.errors import InputError

    volume = MetaTensor(torch.rand(1, 8, 8, 8), affine=torch.eye(4))
    method = medi2i.Registry().method("intensity-inversion")()
    with pytest.raises(
        OptionsError, match="takes a file or DICOM folder path, not a NoneType object"
    ):
        medi2i.read_volume(None)  # type: ignore[arg-type]
    with pytest.raises(OptionsError, match="the output path is a NoneType object"):
        medi2i.write_volume(volume, None)  # type: ignore[arg-type]
    with pytest.raises(OptionsError, match="is a mapping of its fields"):
        medi2i.predict_tensor(method, volume, condition="x")  # type: ignore[arg-type]
    with pytest.raises(OptionsError, match="engine= takes a medi2i SlidingWindowEngine"):
        medi2i.predict_tensor(method, volume, engine="cpu")  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"not the path 'in\.nii\.gz'; read it first"):
        medi2i.body_mask("in.nii.gz")  # type: ignore[arg-type]
