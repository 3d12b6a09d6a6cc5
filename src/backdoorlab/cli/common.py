"""Arguments shared by the commands that define an attack run, and their merge into a ``RunConfig``."""

from __future__ import annotations

import argparse
import os
from typing import Any

from ..config import parse_kv, read_config
from ..errors import ConfigError


def add_run_args(sp: argparse.ArgumentParser) -> None:
    g = sp.add_argument_group("data and model")
    g.add_argument("--config", help="JSON or TOML file of run options (flags override it)")
    g.add_argument(
        "--data",
        help="data set name (`backdoorlab list data`), a .npz file or an image folder [fashion-mnist]",
    )
    g.add_argument("--data-root", help="folder holding the data set's files")
    g.add_argument(
        "--data-opt", action="append", metavar="K=V", help="data set option (repeatable)"
    )
    g.add_argument("--model", help="architecture (`backdoorlab list models`) [by input shape]")
    g.add_argument(
        "--model-opt",
        action="append",
        metavar="K=V",
        help="model option, e.g. width=32 (repeatable)",
    )
    g.add_argument(
        "--train-subset", type=int, help="train on a class-balanced subset of this many images"
    )
    a = sp.add_argument_group("attack")
    a.add_argument("--attack", help="attack name (`backdoorlab list attacks`) [badnets]")
    a.add_argument(
        "--trigger", help="trigger name (`backdoorlab list triggers`) [the attack's default]"
    )
    a.add_argument(
        "--trigger-opt",
        action="append",
        metavar="K=V",
        help="trigger option, e.g. size=4 (repeatable)",
    )
    a.add_argument(
        "--attack-opt", action="append", metavar="K=V", help="extra attack option (repeatable)"
    )
    a.add_argument("--target", type=int, help="target class [0]")
    a.add_argument(
        "--mode",
        choices=["all-to-one", "all-to-all", "source-specific"],
        help="target mapping [all-to-one]",
    )
    a.add_argument("--sources", help="source classes for source-specific mode, e.g. 1,2")
    a.add_argument(
        "--rate", type=float, help="poison rate, fraction of the training set in (0, 1] [0.1]"
    )
    a.add_argument("--count", type=int, help="number of poisoned samples (instead of --rate)")
    t = sp.add_argument_group("training")
    t.add_argument("--epochs", type=int, help="training epochs [5]")
    t.add_argument("--batch-size", type=int, help="batch size [128]")
    t.add_argument("--lr", type=float, help="learning rate [0.003]")
    t.add_argument("--optimizer", choices=["adam", "adamw", "sgd"])
    t.add_argument("--scheduler", choices=["none", "cosine", "step", "onecycle"])
    t.add_argument("--augment", choices=["none", "crop", "flip", "crop+flip"])
    t.add_argument("--device", help="cpu, cuda, cuda:1 or auto [auto]")
    t.add_argument("--seed", type=int, help="seed for init, poisoning and data order [0]")
    t.add_argument(
        "--clean-baseline",
        action="store_true",
        default=None,
        help="also train a clean model the same way, for comparison",
    )


def run_config_from_args(args: argparse.Namespace) -> Any:
    """Merge defaults < config file < flags into a ``RunConfig``."""
    from ..experiment import RunConfig

    base: dict[str, Any] = read_config(args.config) if getattr(args, "config", None) else {}
    source = str(getattr(args, "config", None) or "options")
    RunConfig.from_dict(base, source)  # unknown keys in the file: one clear error
    train_cfg = dict(base.pop("train", {}) or {})
    flag_map = {
        "data": "data",
        "data_root": "data_root",
        "model": "model",
        "attack": "attack",
        "trigger": "trigger",
        "target": "target",
        "mode": "mode",
        "rate": "rate",
        "count": "count",
        "seed": "seed",
        "train_subset": "train_subset",
        "clean_baseline": "clean_baseline",
    }
    for a, k in flag_map.items():
        v = getattr(args, a, None)
        if v is not None:
            base[k] = v
    if getattr(args, "sources", None):
        try:
            base["sources"] = [int(s) for s in str(args.sources).split(",") if s.strip()]
        except ValueError:
            raise ConfigError(
                f"--sources {args.sources!r}: expected class numbers like 1,2"
            ) from None
    for flag, key in (
        ("trigger_opt", "trigger_options"),
        ("attack_opt", "attack_options"),
        ("model_opt", "model_options"),
        ("data_opt", "data_options"),
    ):
        extra = parse_kv(getattr(args, flag, None), "--" + flag.replace("_", "-"))
        if extra:
            base[key] = {**base.get(key, {}), **extra}
    for a in ("epochs", "batch_size", "lr", "optimizer", "scheduler", "augment", "device"):
        v = getattr(args, a, None)
        if v is not None:
            train_cfg[a] = v
    if os.environ.get("BACKDOORLAB_NO_PROGRESS"):
        train_cfg.setdefault("progress", False)
    base["train"] = train_cfg
    return RunConfig.from_dict(base, source)
