"""Models: a registry of small classifiers and safe save/load (safetensors, TorchScript)."""

from .io import (
    export_torchscript,
    is_torchscript,
    load_model,
    load_torchscript,
    model_card,
    read_state_dict,
    save_model,
)
from .zoo import MODELS, create_model, list_models

__all__ = [
    "MODELS",
    "create_model",
    "export_torchscript",
    "is_torchscript",
    "list_models",
    "load_model",
    "load_torchscript",
    "model_card",
    "read_state_dict",
    "save_model",
]
