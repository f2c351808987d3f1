"""medi2i: translate 3D medical volumes from one kind of image to another.

This module is the public API for users and plugin authors; everything else may
change. Attributes are imported on first use so that ``import medi2i`` (and so
``medi2i --help``) stays fast and does not import torch or MONAI.

Example:
    >>> import medi2i
    >>> medi2i.predict("mr.nii.gz", "sct.nii.gz", method="intensity-inversion")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from medi2i.errors import (
    DeviceError,
    ExportError,
    GeometryError,
    InputError,
    Medi2iError,
    ModelFormatError,
    OptionsError,
    OutputError,
    PluginError,
    TrainingError,
    UnknownMethodError,
)
from medi2i.hookspecs import PLUGIN_API_VERSION, hookimpl

__version__ = "0.1.0"

_LAZY = {
    "DomainIntensities": "medi2i.intensity",
    "AIR_HU": "medi2i.intensity",
    "TrainingStateValue": "medi2i.method",
    "MethodClass": "medi2i.method",
    "check_percentiles": "medi2i.intensity",
    "MRToCTIntensities": "medi2i.intensity",
    "MRNormalization": "medi2i.intensity",
    "MRForeground": "medi2i.intensity",
    "foreground": "medi2i.intensity",
    "HU_MIN": "medi2i.intensity",
    "HU_MAX": "medi2i.intensity",
    "AdaptContext": "medi2i.method",
    "AuxiliaryNetwork": "medi2i.method",
    "DomainSpec": "medi2i.method",
    "FitPair": "medi2i.method",
    "MultiDomainBatch": "medi2i.method",
    "Output": "medi2i.method",
    "PairedBatch": "medi2i.method",
    "SingleDomainBatch": "medi2i.method",
    "StateValue": "medi2i.method",
    "TrainerAPI": "medi2i.method",
    "Training": "medi2i.method",
    "UnpairedBatch": "medi2i.method",
    "predict_outputs": "medi2i.prediction",
    "predict_all": "medi2i.prediction",
    "DataKind": "medi2i.method",
    "Grid": "medi2i.grid",
    "Method": "medi2i.method",
    "NoCondition": "medi2i.method",
    "Options": "medi2i.method",
    "PatchNetworkMethod": "medi2i.patch_network",
    "PredictContext": "medi2i.method",
    "SpatialPlan": "medi2i.grid",
    "Task": "medi2i.method",
    "VolumeSpec": "medi2i.method",
    "InferenceSettings": "medi2i.settings",
    "HounsfieldScale": "medi2i.intensity",
    "normalize_mr": "medi2i.intensity",
    "is_hounsfield": "medi2i.intensity",
    "SlidingWindowEngine": "medi2i.engine",
    "VolumeReader": "medi2i.io.base",
    "VolumeWriter": "medi2i.io.base",
    "read_volume": "medi2i.io",
    "volume_from_array": "medi2i.io.base",
    "write_volume": "medi2i.io",
    "Metric": "medi2i.metrics",
    "predict": "medi2i.prediction",
    "predict_tensor": "medi2i.prediction",
    "load_model": "medi2i.model_folder",
    "save_model": "medi2i.model_folder",
    "Registry": "medi2i.registry",
    "load_plugins": "medi2i.plugins",
    "body_mask": "medi2i.body_contour",
    "ImagePool": "medi2i.training.image_pool",
    "DomainScales": "medi2i.domain_scales",
    "IntensityScaleWarning": "medi2i.domain_scales",
    "ScaledDomainIntensities": "medi2i.domain_scales",
    "TargetDomain": "medi2i.multi_domain",
    "adapt_statistics": "medi2i.adabn",
    "statistics_layers": "medi2i.adabn",
    "check_betas": "medi2i.option_checks",
    "check_spacing": "medi2i.option_checks",
    "tile_windows": "medi2i.adabn",
    "TargetDomainOutputs": "medi2i.multi_domain",
    "UntrainedWeightsWarning": "medi2i.trained_state",
    "SpacingWarning": "medi2i.training_spacing",
    "mark_trained": "medi2i.trained_state",
    "checked_input": "medi2i.voxel_checks",
    "file_sha256": "medi2i.hashing",
    "volume_sha256": "medi2i.provenance",
    "Case": "medi2i.data.cases",
    "CaseSet": "medi2i.data.cases",
    "ModelVersionWarning": "medi2i.model_checks",
}

__all__ = [
    "AIR_HU",
    "HU_MAX",
    "HU_MIN",
    "PLUGIN_API_VERSION",
    "AdaptContext",
    "AuxiliaryNetwork",
    "Case",
    "CaseSet",
    "DataKind",
    "DeviceError",
    "DomainIntensities",
    "DomainScales",
    "DomainSpec",
    "ExportError",
    "FitPair",
    "GeometryError",
    "Grid",
    "HounsfieldScale",
    "ImagePool",
    "InferenceSettings",
    "InputError",
    "IntensityScaleWarning",
    "MRForeground",
    "MRNormalization",
    "MRToCTIntensities",
    "Medi2iError",
    "Method",
    "MethodClass",
    "Metric",
    "ModelFormatError",
    "ModelVersionWarning",
    "MultiDomainBatch",
    "NoCondition",
    "Options",
    "OptionsError",
    "Output",
    "OutputError",
    "PairedBatch",
    "PatchNetworkMethod",
    "PluginError",
    "PredictContext",
    "Registry",
    "ScaledDomainIntensities",
    "SingleDomainBatch",
    "SlidingWindowEngine",
    "SpacingWarning",
    "SpatialPlan",
    "StateValue",
    "TargetDomain",
    "TargetDomainOutputs",
    "Task",
    "TrainerAPI",
    "Training",
    "TrainingError",
    "TrainingStateValue",
    "UnknownMethodError",
    "UnpairedBatch",
    "UntrainedWeightsWarning",
    "VolumeReader",
    "VolumeSpec",
    "VolumeWriter",
    "__version__",
    "adapt_statistics",
    "body_mask",
    "check_betas",
    "check_percentiles",
    "check_spacing",
    "checked_input",
    "file_sha256",
    "foreground",
    "hookimpl",
    "is_hounsfield",
    "load_model",
    "load_plugins",
    "mark_trained",
    "normalize_mr",
    "predict",
    "predict_all",
    "predict_outputs",
    "predict_tensor",
    "read_volume",
    "save_model",
    "statistics_layers",
    "tile_windows",
    "volume_from_array",
    "volume_sha256",
    "write_volume",
]


def __getattr__(name: str) -> object:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'medi2i' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    # the lazy attributes are public too: list them before their first use
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from medi2i.adabn import adapt_statistics, statistics_layers, tile_windows
    from medi2i.body_contour import body_mask
    from medi2i.data.cases import Case, CaseSet
    from medi2i.domain_scales import DomainScales, IntensityScaleWarning, ScaledDomainIntensities
    from medi2i.engine import SlidingWindowEngine
    from medi2i.grid import Grid, SpatialPlan
    from medi2i.hashing import file_sha256
    from medi2i.intensity import (
        AIR_HU,
        HU_MAX,
        HU_MIN,
        DomainIntensities,
        HounsfieldScale,
        MRForeground,
        MRNormalization,
        MRToCTIntensities,
        check_percentiles,
        foreground,
        is_hounsfield,
        normalize_mr,
    )
    from medi2i.io import read_volume, write_volume
    from medi2i.io.base import VolumeReader, VolumeWriter, volume_from_array
    from medi2i.method import (
        AdaptContext,
        AuxiliaryNetwork,
        DataKind,
        DomainSpec,
        FitPair,
        Method,
        MethodClass,
        MultiDomainBatch,
        NoCondition,
        Options,
        Output,
        PairedBatch,
        PredictContext,
        SingleDomainBatch,
        StateValue,
        Task,
        TrainerAPI,
        Training,
        TrainingStateValue,
        UnpairedBatch,
        VolumeSpec,
    )
    from medi2i.metrics import Metric
    from medi2i.model_checks import ModelVersionWarning
    from medi2i.model_folder import load_model, save_model
    from medi2i.multi_domain import TargetDomain, TargetDomainOutputs
    from medi2i.option_checks import check_betas, check_spacing
    from medi2i.patch_network import PatchNetworkMethod
    from medi2i.plugins import load_plugins
    from medi2i.prediction import predict, predict_all, predict_outputs, predict_tensor
    from medi2i.provenance import volume_sha256
    from medi2i.registry import Registry
    from medi2i.settings import InferenceSettings
    from medi2i.trained_state import UntrainedWeightsWarning, mark_trained
    from medi2i.training.image_pool import ImagePool
    from medi2i.training_spacing import SpacingWarning
    from medi2i.voxel_checks import checked_input
