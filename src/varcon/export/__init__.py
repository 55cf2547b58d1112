"""Writing a trained encoder for use without varcon's training run (``varcon export``).

Reading it back is ``varcon.load_encoder`` (:mod:`varcon.runtime.checkpoint`).
"""

from .writer import EXPORT_FORMATS, export_encoder, torchvision_state_dict

__all__ = ["EXPORT_FORMATS", "export_encoder", "torchvision_state_dict"]
