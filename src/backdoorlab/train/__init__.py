"""Training and evaluation: the one loop (``fit``) and the one evaluation path (``evaluate``)."""

from .augment import augment, random_crop, random_flip
from .evaluate import accuracy, evaluate, logits, predict
from .loop import History, TrainSpec, fit

__all__ = [
    "History",
    "TrainSpec",
    "accuracy",
    "augment",
    "evaluate",
    "fit",
    "logits",
    "predict",
    "random_crop",
    "random_flip",
]
