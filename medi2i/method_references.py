"""What ``method=`` and ``model=`` take: a method id and a trained-model path.

:func:`medi2i.predict` reads a file and writes one, making its method from an id or
loading it from a model; a method object the caller already holds (made, fitted or
loaded in Python) runs through :func:`medi2i.predict_tensor` instead. Passing such an
object where an id or a path is expected used to fail with its ``repr`` in "no method
<...CycleGAN object at 0x7f...> is registered", or with Python's "expected str, bytes or
os.PathLike object"; these checks say what to pass instead.
"""

from __future__ import annotations

import os

from medi2i.errors import OptionsError

_RUN_AN_OBJECT = (
    "to run a method object you hold, read the volume and translate it in memory: "
    "medi2i.write_volume(medi2i.predict_tensor(method, medi2i.read_volume(SOURCE)), OUTPUT)"
)


def require_method_id(given: object) -> None:
    """Refuse anything but a ``str`` where a method id is expected.

    Raises:
        OptionsError: ``given`` is a method instance or class, or another object; the
            message says what to pass instead.
    """
    if isinstance(given, str):
        return
    identifier = getattr(given, "id", None)
    by_id = (
        f"pass method={identifier!r} (and options=...) to have medi2i make it, or {_RUN_AN_OBJECT}"
        if isinstance(identifier, str)
        else _RUN_AN_OBJECT
    )
    raise OptionsError(
        "method= takes the id of a registered method, a str such as 'intensity-inversion' "
        f"(`medi2i methods` lists them), not {_described(given)}; {by_id}"
    )


def require_model_path(given: object) -> None:
    """Refuse anything but a path where a trained model (folder, zip, ``.onnx``) is
    expected.

    Raises:
        OptionsError: ``given`` is a method instance or another object; the message
            says what to pass instead.
    """
    if isinstance(given, (str, os.PathLike)):
        return
    raise OptionsError(
        "model= takes the path of a trained-model folder, a zip of one or an .onnx export, "
        f"not {_described(given)}; {_RUN_AN_OBJECT}"
    )


def require_source_path(given: object) -> None:
    """Refuse anything but a path as the input of :func:`medi2i.predict`.

    Raises:
        OptionsError: ``given`` is a method object, a volume or another object; the
            message says what to pass instead.
    """
    if isinstance(given, (str, os.PathLike)):
        return
    if hasattr(given, "predict") or isinstance(given, type):
        hint = f"the method goes in method= (its id) or model= (a path); {_RUN_AN_OBJECT}"
    else:
        hint = (
            "for a volume in memory use medi2i.predict_tensor(method, volume) and "
            "medi2i.write_volume"
        )
    raise OptionsError(
        f"medi2i.predict(source, output, ...) takes the input file's path first, not "
        f"{_described(given)}; {hint}"
    )


def _described(given: object) -> str:
    if isinstance(given, type):
        return f"the class {given.__module__}.{given.__qualname__}"
    return f"a {type(given).__name__} object"
