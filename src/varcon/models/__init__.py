"""Encoders (registry of torchvision ResNets and a small CNN), projection head, network."""

from . import resnet as _resnet  # noqa: F401  (registers resnet18/34/50/101)
from . import small_cnn as _small_cnn  # noqa: F401  (registers small_cnn)
from .checkpoint import (
    CheckpointError,
    build_network_from_spec,
    find_checkpoint,
    load_checkpoint,
    load_encoder,
    load_network,
    network_spec,
)
from .heads import ProjectionHead
from .network import METHODS, Network, build_network
from .registry import create_model, list_models, register_model
from .resnet import ResNetEncoder, resnet_encoder
from .small_cnn import SmallCNN

__all__ = [
    "METHODS",
    "CheckpointError",
    "Network",
    "ProjectionHead",
    "ResNetEncoder",
    "SmallCNN",
    "build_network",
    "build_network_from_spec",
    "create_model",
    "find_checkpoint",
    "list_models",
    "load_checkpoint",
    "load_encoder",
    "load_network",
    "network_spec",
    "register_model",
    "resnet_encoder",
]
