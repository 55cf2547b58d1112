"""Encoders built by name (a registry of torchvision ResNets, a small CNN, timm backbones),
the projection head, and the network (encoder + the method's head) with its plain-data spec.

Loading a *trained* network (a run, a checkpoint, an export) is
:mod:`varcon.runtime.checkpoint` (``varcon.load_encoder``); writing exports is
:mod:`varcon.export`.
"""

from . import resnet as _resnet  # noqa: F401  (registers resnet18/34/50/101)
from . import small_cnn as _small_cnn  # noqa: F401  (registers small_cnn)
from . import timm_backbones as _timm_backbones  # noqa: F401  (serves timm/<name>)
from .heads import ProjectionHead
from .network import Network, build_head, build_network, build_network_from_spec, network_spec
from .registry import create_model, list_models, register_model
from .resnet import ResNetEncoder, resnet_encoder
from .small_cnn import SmallCNN
from .weights import PretrainedWeightsError, load_encoder_weights

__all__ = [
    "Network",
    "PretrainedWeightsError",
    "ProjectionHead",
    "ResNetEncoder",
    "SmallCNN",
    "build_head",
    "build_network",
    "build_network_from_spec",
    "create_model",
    "list_models",
    "load_encoder_weights",
    "network_spec",
    "register_model",
    "resnet_encoder",
]
