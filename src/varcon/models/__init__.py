"""Encoders (registry of torchvision ResNets and a small CNN), projection head, network."""

from . import resnet as _resnet  # noqa: F401  (registers resnet18/34/50/101)
from . import small_cnn as _small_cnn  # noqa: F401  (registers small_cnn)
from . import timm_backbones as _timm_backbones  # noqa: F401  (serves timm/<name>)
from .checkpoint import (
    CheckpointError,
    build_network_from_spec,
    find_checkpoint,
    load_checkpoint,
    load_encoder,
    load_network,
    network_spec,
)
from .export import TrainedModel, export_encoder, load_trained
from .heads import ProjectionHead
from .network import METHODS, Network, build_network
from .registry import create_model, list_models, register_model
from .resnet import ResNetEncoder, resnet_encoder
from .small_cnn import SmallCNN
from .weights import PretrainedWeightsError, load_encoder_weights

__all__ = [
    "METHODS",
    "CheckpointError",
    "Network",
    "PretrainedWeightsError",
    "ProjectionHead",
    "ResNetEncoder",
    "SmallCNN",
    "TrainedModel",
    "build_network",
    "build_network_from_spec",
    "create_model",
    "export_encoder",
    "find_checkpoint",
    "list_models",
    "load_checkpoint",
    "load_encoder",
    "load_encoder_weights",
    "load_network",
    "load_trained",
    "network_spec",
    "register_model",
    "resnet_encoder",
]
