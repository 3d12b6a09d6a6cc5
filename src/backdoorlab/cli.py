"""The ``backdoorlab`` command: subcommands over the same Python API.

Configuration is layered: built-in defaults < ``--config FILE`` (JSON or TOML) < command-line flags.
Bad input prints one line naming the problem and exits with status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, NoReturn

from . import __version__
from .config import parse_kv, read_config
from .errors import BackdoorLabError, ConfigError

FAMILIES = ("attacks", "triggers", "defenses", "models", "data")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _add_run_args(sp: argparse.ArgumentParser) -> None:
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
    from .experiment import RunConfig
    from .train import TrainSpec

    base: dict[str, Any] = read_config(args.config) if getattr(args, "config", None) else {}
    known = {f.name for f in fields(RunConfig)}
    unknown = sorted(set(base) - known)
    if unknown:
        raise ConfigError(
            f"{args.config}: unknown key(s) {', '.join(unknown)}; accepted: {', '.join(sorted(known))}"
        )
    train_cfg = dict(base.pop("train", {}) or {})
    tkeys = {f.name for f in fields(TrainSpec)}
    bad = sorted(set(train_cfg) - tkeys)
    if bad:
        raise ConfigError(
            f"{args.config}: unknown train key(s) {', '.join(bad)}; accepted: {', '.join(sorted(tkeys))}"
        )
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
    base["train"] = TrainSpec(**train_cfg)
    try:
        return RunConfig(**base)
    except TypeError as e:
        raise ConfigError(f"bad run options: {e}") from None


def cmd_list(args: argparse.Namespace) -> int:
    """Print registered names with a one-line description."""
    from .registry import Registry

    regs = _registries()
    fams = [args.family] if args.family else list(FAMILIES)
    for fam in fams:
        reg: Registry[Any] = regs[fam]
        if len(fams) > 1:
            print(f"[{fam}]")
        width = max((len(n) for n in reg.names()), default=0)
        for e in reg.entries():
            print(f"{e.name:<{width}}  {e.description}")
        if len(fams) > 1:
            print()
    return 0


def _registries() -> dict[str, Any]:
    from .attacks import ATTACKS
    from .data import DATASETS
    from .defenses import DEFENSES
    from .models import MODELS
    from .triggers import TRIGGERS

    return {
        "attacks": ATTACKS,
        "triggers": TRIGGERS,
        "defenses": DEFENSES,
        "models": MODELS,
        "data": DATASETS,
    }


def cmd_attack(args: argparse.Namespace) -> int:
    """Poison, train, evaluate and write a run folder."""
    from .experiment import prepare, run_attack

    if not args.out:
        raise ConfigError("attack: --out DIR is required")
    cfg = run_config_from_args(args)
    p = prepare(cfg)
    print(
        f"attack {cfg.attack} / trigger {p.trigger.name} on {cfg.data} ({len(p.splits.train)} train, {len(p.splits.test)} test), model {p.arch}, {cfg.train.epochs} epochs",
        file=sys.stderr,
    )
    res = run_attack(cfg, args.out, prepared=p)
    line = f"clean_acc={res['clean_acc']:.4f} asr={res['asr']:.4f} poisoned={res['poisoned']} train={res['timings']['train_s']:.1f}s"
    if "clean_model" in res:
        line += f" clean_model_acc={res['clean_model']['clean_acc']:.4f}"
    print(line)
    print(f"wrote {args.out}/results.json, model.safetensors, samples.png")
    return 0


def cmd_gallery(args: argparse.Namespace) -> int:
    """Write a PNG of clean | triggered | amplified difference for some triggers on some data."""
    import torch

    from .data import load_dataset
    from .report.images import amplified_difference, grid_image, save_png
    from .triggers import TRIGGERS

    names = args.trigger or []
    if not names or names == ["all"]:
        names = TRIGGERS.names()
    for n in names:
        TRIGGERS.get(n)
    opts = parse_kv(args.trigger_opt, "--trigger-opt")
    splits = load_dataset(args.data, args.data_root)
    test = splits.test
    pick = torch.cat([torch.nonzero(test.y == k).flatten()[:1] for k in range(test.num_classes)])[
        : args.n
    ]
    clean = test.x[pick]
    rows, labels = [clean], ["clean"]
    for n in names:
        trig = TRIGGERS.create(n, **opts) if len(names) == 1 else TRIGGERS.create(n)
        x2 = trig(clean, torch.Generator().manual_seed(args.seed)).clamp(0, 1)
        rows += [x2, amplified_difference(clean, x2)]
        labels += [n, f"{n} |diff|"]
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise ConfigError(f"--out {out}: expected a .png file name")
    save_png(grid_image(rows, labels, scale=args.scale), out)
    print(f"wrote {out} ({len(names)} trigger(s) on {len(clean)} {args.data} images)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job: clean vs backdoored models, a table and a report folder."""
    from .demo import run_demo

    run_demo(out=args.out, epochs=args.epochs, seed=args.seed, data=args.data, quick=args.quick)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    p = _Parser(
        prog="backdoorlab", description="Craft, measure, find and remove deep-learning backdoors."
    )
    p.add_argument("--version", action="version", version=f"backdoorlab {__version__}")
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sp = sub.add_parser(
        "list", help="list registered attacks, triggers, defenses, models or data sets"
    )
    sp.add_argument("family", nargs="?", choices=FAMILIES)
    sp.set_defaults(func=cmd_list)

    sp = sub.add_parser(
        "attack", help="poison a data set, train a model, measure clean accuracy and ASR"
    )
    _add_run_args(sp)
    sp.add_argument("--out", help="output folder (written atomically)")
    sp.set_defaults(func=cmd_attack)

    sp = sub.add_parser(
        "gallery", help="PNG of clean | triggered | amplified difference for triggers"
    )
    sp.add_argument("--data", default="fashion-mnist")
    sp.add_argument("--data-root")
    sp.add_argument(
        "--trigger",
        action="append",
        help="trigger name (repeatable; 'all' or none for every trigger)",
    )
    sp.add_argument(
        "--trigger-opt",
        action="append",
        metavar="K=V",
        help="options (only with a single --trigger)",
    )
    sp.add_argument("--n", type=int, default=10, help="number of sample images [10]")
    sp.add_argument("--scale", type=int, default=3)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--out", default="gallery.png")
    sp.set_defaults(func=cmd_gallery)

    sp = sub.add_parser(
        "demo", help="the main job: clean and backdoored models, a table and a report"
    )
    sp.add_argument("--out", default="backdoorlab-demo", help="report folder [backdoorlab-demo]")
    sp.add_argument(
        "--data", default=None, help="data set [fashion-mnist, or synthetic-signs if absent]"
    )
    sp.add_argument("--epochs", type=int, default=None)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--quick", action="store_true", help="a small fast run (for smoke tests)")
    sp.set_defaults(func=cmd_demo)
    _register_plugins(sub)
    return p


def _register_plugins(sub: Any) -> None:
    """Subcommands that live beside their Python API (scan, defend, sanitize)."""
    import importlib

    for name in ("scan", "defend"):
        try:
            mod = importlib.import_module(f"backdoorlab.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"backdoorlab.{name}":
                raise
            continue
        mod.register_cli(sub)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``backdoorlab`` console command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc: int = args.func(args)
        return rc
    except BackdoorLabError as e:
        if args.debug:
            raise
        print(f"backdoorlab {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"backdoorlab {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug: keep the message to one line unless --debug
        if args.debug:
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        print(
            f"backdoorlab {args.command}: internal error: {type(e).__name__}: {msg} (rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
