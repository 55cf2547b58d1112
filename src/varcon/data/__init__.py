"""Data: datasets as uint8 image tensors, and v2-based augmentations.

See :func:`build_dataset` and :func:`build_transform`. Datasets are registered by name
(:func:`register_dataset`, :func:`get_dataset`, :func:`dataset_names`).
"""

from .datasets import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
    DIGITS_MEAN,
    DIGITS_STD,
    IMAGENET_GRAY_MEAN,
    IMAGENET_GRAY_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    DatasetInfo,
    EncodedImage,
    ImageFileDataset,
    TensorImageDataset,
    build_dataset,
    compute_mean_std,
    decode_image_file,
)
from .registry import DatasetSpec, dataset_names, get_dataset, register_dataset
from .transforms import (
    AutoAugmentTransform,
    EvalTransform,
    LinearAugment,
    MultiView,
    RandAugmentTransform,
    SimAugment,
    TransformedDataset,
    ViewBatch,
    build_transform,
)
from .views import normalize_uint8

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "DIGITS_MEAN",
    "DIGITS_STD",
    "IMAGENET_GRAY_MEAN",
    "IMAGENET_GRAY_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "AutoAugmentTransform",
    "DatasetInfo",
    "DatasetSpec",
    "EncodedImage",
    "EvalTransform",
    "ImageFileDataset",
    "LinearAugment",
    "MultiView",
    "RandAugmentTransform",
    "SimAugment",
    "TensorImageDataset",
    "TransformedDataset",
    "ViewBatch",
    "build_dataset",
    "build_transform",
    "compute_mean_std",
    "dataset_names",
    "decode_image_file",
    "get_dataset",
    "normalize_uint8",
    "register_dataset",
]
