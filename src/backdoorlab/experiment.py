"""What defines an attack run (``RunConfig``) and how it is prepared: data, trigger, attack, model.

``prepare`` validates every option before any work starts; ``pipeline.run_attack`` then poisons,
trains and evaluates, and ``runs`` writes and reads the run folder. The demo, the CLI and the
benchmark all build their attacks here (one factory).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
from torch import nn

from .attacks import ATTACKS, PoisoningAttack
from .data import ImageData, Splits, load_dataset
from .errors import ConfigError
from .models import create_model
from .train import History, TrainSpec, fit
from .train.hooks import TrainHooks
from .triggers import TRIGGERS, Trigger


def default_model_for(shape: tuple[int, int, int]) -> str:
    """The default architecture for an input shape: BadNets CNN for 1-channel, small CNN otherwise."""
    return "badnets_cnn" if shape[0] == 1 else "small_cnn"


def default_model_options(arch: str, shape: tuple[int, int, int]) -> dict[str, Any]:
    """Default options of the default architectures (a light small CNN on CPU)."""
    return {"width": 16} if arch == "small_cnn" else {}


@dataclass
class RunConfig:
    """Everything that defines an attack run; the same config and seed give the same numbers."""

    data: str = "fashion-mnist"
    data_root: str | None = None
    data_options: dict[str, Any] = field(default_factory=dict)
    attack: str = "badnets"
    trigger: str | None = None
    trigger_options: dict[str, Any] = field(default_factory=dict)
    attack_options: dict[str, Any] = field(default_factory=dict)
    target: int = 0
    mode: str = "all-to-one"
    rate: float = 0.1
    count: int | None = None
    sources: list[int] = field(default_factory=list)
    model: str | None = None
    model_options: dict[str, Any] = field(default_factory=dict)
    train: TrainSpec = field(default_factory=TrainSpec)
    seed: int = 0
    train_subset: int | None = None
    clean_baseline: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> RunConfig:
        """Build from a dict (a config file or ``results.json``); unknown keys are a ``ConfigError``."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected an object of run options")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"{source}: unknown key(s) {', '.join(unknown)}; accepted: {', '.join(sorted(known))}"
            )
        train = data.get("train", {})
        if isinstance(train, TrainSpec):
            spec = train
        else:
            if not isinstance(train, dict):
                raise ConfigError(f"{source}: 'train' must be a table of training options")
            tkeys = {f.name for f in fields(TrainSpec)}
            bad = sorted(set(train) - tkeys)
            if bad:
                raise ConfigError(
                    f"{source}: unknown train key(s) {', '.join(bad)}; accepted: {', '.join(sorted(tkeys))}"
                )
            spec = TrainSpec(**train)
        try:
            return cls(**{**data, "train": spec})
        except TypeError as e:
            raise ConfigError(f"{source}: bad run options ({e})") from None

    def config_hash(self) -> str:
        """A stable hash of the whole configuration (sorted canonical JSON, SHA-256)."""
        import hashlib
        import json

        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class Prepared:
    """A validated run: data, trigger, attack and a freshly initialised model."""

    cfg: RunConfig
    splits: Splits
    trigger: Trigger
    attack: PoisoningAttack
    arch: str
    model_options: dict[str, Any]


def build_trigger(name: str | None, options: dict[str, Any]) -> Trigger | None:
    """A registered trigger from name and options, or ``None`` for the attack's default."""
    if name is None:
        if options:
            raise ConfigError("trigger options given without --trigger NAME")
        return None
    trig: Trigger = TRIGGERS.create(name, **options)
    return trig


def prepare(cfg: RunConfig) -> Prepared:
    """Load and check everything a run needs; raises a ``BackdoorLabError`` on any bad option."""
    if cfg.attack not in ATTACKS:
        ATTACKS.get(cfg.attack)  # raises the clear unknown-name error
    if cfg.trigger is not None and cfg.trigger not in TRIGGERS:
        TRIGGERS.get(cfg.trigger)
    if cfg.count is None and not 0 < cfg.rate <= 1:
        raise ConfigError(f"--rate must be in (0, 1], got {cfg.rate}")
    splits = load_dataset(cfg.data, cfg.data_root, seed=cfg.seed, **cfg.data_options)
    if cfg.train_subset:
        splits = Splits(
            train=splits.train.per_class(
                max(1, cfg.train_subset // splits.train.num_classes), seed=cfg.seed
            ),
            test=splits.test,
            val=splits.val,
        )
    k = splits.train.num_classes
    if cfg.mode != "all-to-all" and not 0 <= cfg.target < k:
        raise ConfigError(f"--target {cfg.target} out of range: {cfg.data} has classes 0..{k - 1}")
    trigger = build_trigger(cfg.trigger, cfg.trigger_options)
    opts: dict[str, Any] = dict(
        target=cfg.target, mode=cfg.mode, rate=cfg.rate, count=cfg.count, **cfg.attack_options
    )
    if cfg.sources:
        opts["sources"] = tuple(cfg.sources)
    if trigger is not None:
        opts["trigger"] = trigger
    attack: PoisoningAttack = ATTACKS.create(cfg.attack, **opts)
    attack.target_map(k)  # validates target / sources against the data
    attack.trigger(splits.train.x[:2], torch.Generator().manual_seed(0))  # trigger fits the images
    arch = cfg.model or default_model_for(splits.train.shape)
    mopts = cfg.model_options or default_model_options(arch, splits.train.shape)
    create_model(
        arch, num_classes=k, input_shape=splits.train.shape, **mopts
    )  # validates arch / options
    return Prepared(cfg, splits, attack.trigger, attack, arch, mopts)


def train_model(
    p: Prepared,
    data: ImageData,
    history: History | None = None,
    hooks: TrainHooks | None = None,
) -> nn.Module:
    """Initialise the run's architecture with its seed and train it on ``data`` (with ``hooks``)."""
    model = create_model(
        p.arch,
        num_classes=data.num_classes,
        input_shape=data.shape,
        seed=p.cfg.seed,
        **p.model_options,
    )
    spec = TrainSpec(**{**p.cfg.train.to_dict(), "seed": p.cfg.seed})
    return fit(model, data, spec, history=history, hooks=hooks)
