"""Models: a registry of small classifiers and safe save/load (safetensors, TorchScript)."""

from .config import arch_config, model_config, model_config_hash, model_from_config
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
    "arch_config",
    "create_model",
    "export_torchscript",
    "is_torchscript",
    "list_models",
    "load_model",
    "load_torchscript",
    "model_card",
    "model_config",
    "model_config_hash",
    "model_from_config",
    "read_state_dict",
    "save_model",
]
