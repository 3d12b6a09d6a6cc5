"""One attack run end to end: load data, build trigger and attack, poison, train, evaluate, save.

``run_attack`` is what ``backdoorlab attack`` and ``backdoorlab demo`` call; it validates every
option before any work starts, and writes its output folder atomically (all or nothing).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import __version__
from .attacks import ATTACKS, PoisoningAttack
from .data import ImageData, Splits, load_dataset
from .errors import ConfigError
from .models import create_model, save_model
from .train import History, TrainSpec, evaluate, fit
from .triggers import TRIGGERS, Trigger
from .utils import atomic_dir, atomic_write_json


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


def train_model(p: Prepared, data: ImageData, history: History | None = None) -> nn.Module:
    """Initialise the run's architecture with its seed and train it on ``data``."""
    model = create_model(
        p.arch,
        num_classes=data.num_classes,
        input_shape=data.shape,
        seed=p.cfg.seed,
        **p.model_options,
    )
    spec = TrainSpec(**{**p.cfg.train.to_dict(), "seed": p.cfg.seed})
    return fit(model, data, spec, history=history)


def stealth_of(trigger: Trigger, x: torch.Tensor, seed: int) -> dict[str, float]:
    """Mean L0/L2/L_inf, PSNR and SSIM of the trigger on a sample of images."""
    from .metrics.stealth import stealth_report

    return stealth_report(trigger, x, generator=torch.Generator().manual_seed(seed))


def run_attack(
    cfg: RunConfig, out: str | Path | None = None, *, prepared: Prepared | None = None
) -> dict[str, Any]:
    """Poison, train, evaluate; with ``out`` write results.json, the model and a sample grid there."""
    t_start = time.perf_counter()
    p = prepared or prepare(cfg)
    t_load = time.perf_counter() - t_start
    t0 = time.perf_counter()
    poisoned = p.attack.poison(p.splits.train, seed=cfg.seed)
    t_poison = time.perf_counter() - t0
    hist = History()
    t0 = time.perf_counter()
    model = train_model(p, poisoned.data, hist)
    t_train = time.perf_counter() - t0
    t0 = time.perf_counter()
    ev = evaluate(model, p.splits.test, p.attack, seed=cfg.seed + 1)
    t_eval = time.perf_counter() - t0
    sample = p.splits.test.x[:256]
    results: dict[str, Any] = {
        "attack": cfg.attack,
        "trigger": p.trigger.name,
        "data": cfg.data,
        "model": p.arch,
        "seed": cfg.seed,
        "clean_acc": ev["clean_acc"],
        "asr": ev["asr"],
        "poisoned": len(poisoned.indices),
        "poison_rate": len(poisoned.indices) / len(p.splits.train),
        "stealth": stealth_of(p.trigger, sample, cfg.seed),
        "per_class": ev["per_class"],
        "attack_config": p.attack.describe(),
        "train": {**cfg.train.to_dict(), "seed": cfg.seed, "loss": hist.loss, "acc": hist.acc},
        "config": cfg.to_dict(),
        "version": __version__,
    }
    clean_model = None
    if cfg.clean_baseline:
        t0 = time.perf_counter()
        clean_model = train_model(p, p.splits.train)
        cev = evaluate(clean_model, p.splits.test, p.attack, seed=cfg.seed + 1)
        results["clean_model"] = {
            "clean_acc": cev["clean_acc"],
            "asr": cev["asr"],
            "seconds": time.perf_counter() - t0,
        }
    results["timings"] = {
        "load_s": t_load,
        "poison_s": t_poison,
        "train_s": t_train,
        "eval_s": t_eval,
        "total_s": time.perf_counter() - t_start,
        "train_images_per_s": len(poisoned.data) * cfg.train.epochs / max(t_train, 1e-9),
    }
    if out is not None:
        write_run(Path(out), results, model, poisoned.indices, p, clean_model)
    results["_model"] = model
    return results


def write_run(
    out: Path,
    results: dict[str, Any],
    model: nn.Module,
    indices: torch.Tensor,
    p: Prepared,
    clean_model: nn.Module | None = None,
) -> None:
    """Write a run folder atomically: results.json, model.safetensors/.json, poison indices, samples.png."""
    from .report.images import save_trigger_grid

    with atomic_dir(out) as tmp:
        classes = p.splits.train.classes
        save_model(model, tmp / "model.safetensors", classes=classes)
        if clean_model is not None:
            save_model(clean_model, tmp / "clean_model.safetensors", classes=classes)
        atomic_write_json(tmp / "poison_indices.json", indices.tolist())
        test = p.splits.test
        pick = torch.cat(
            [torch.nonzero(test.y == k).flatten()[:1] for k in range(test.num_classes)]
        )[:10]
        clean = test.x[pick]
        trig = p.trigger(clean, torch.Generator().manual_seed(p.cfg.seed)).clamp(0, 1)
        save_trigger_grid(clean, trig, tmp / "samples.png", scale=3, title=p.trigger.name)
        atomic_write_json(
            tmp / "results.json", {k: v for k, v in results.items() if not k.startswith("_")}
        )
