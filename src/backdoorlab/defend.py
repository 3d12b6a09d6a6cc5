"""Run any registered defense on an attack run folder: ``backdoorlab defend`` and ``backdoorlab sanitize``.

A run folder is what ``backdoorlab attack --out DIR`` writes (``results.json`` with the run's
``config``, ``model.safetensors`` + ``model.json``, ``poison_indices.json``). The data, the attack
and the poisoned training set are rebuilt deterministically from the config (and checked against
``poison_indices.json``). The defender gets a seeded, class-balanced part of the clean *test* split
(``clean_fraction``); the rest of the test split is used only to score the defense afterwards, so
the two never overlap.

Dispatch is on the defense's protocol class (``defenses.base``):

- ``InputDetector``: ``fit`` on the defender's clean part at ``frr``; score the evaluation part
  (negatives) and its triggered versions (positives); ``metrics.detection.detection_report``.
- ``DataSanitizer``: score the poisoned training set against the true poison indices, retrain on the
  kept samples with the run's ``TrainSpec`` and report CA / ASR before and after.
- ``ModelRepair``: repair with the defender's clean part; ``metrics.detection.repair_report``.
- ``ModelDetector``: the scan result, and whether it names the run's target.

The result goes to ``DIR/defenses/NAME.json`` (atomically), with ``seconds`` and ``peak_mem_mb`` of
the defense's own work (``metrics.detection.measure``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
import warnings
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .attacks.base import PoisonedData
from .data.core import ImageData
from .errors import ConfigError, DataError
from .utils import atomic_write_json, make_generator

PROTOCOLS = ("input-detector", "data-sanitizer", "model-repair", "model-detector")


def load_defenses() -> None:
    """Import every module of ``backdoorlab.defenses`` so that all defenses are registered."""
    from . import defenses

    for info in pkgutil.iter_modules(defenses.__path__):
        name = f"{defenses.__name__}.{info.name}"
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
        except Exception as e:  # a broken sibling module must not hide the others
            warnings.warn(f"could not import {name}: {type(e).__name__}: {e}", stacklevel=2)


@dataclass
class Run:
    """A rebuilt attack run: its config, prepared data and attack, model and poisoned training set."""

    path: Path
    results: dict[str, Any]
    prepared: Any
    model: nn.Module
    poisoned: PoisonedData


def read_run_config(run_dir: Path) -> tuple[dict[str, Any], Any]:
    """``results.json`` of a run folder and its ``RunConfig``."""
    from .experiment import RunConfig
    from .train import TrainSpec

    if not run_dir.exists():
        raise ConfigError(f"--run {run_dir}: no such folder")
    if not run_dir.is_dir():
        raise ConfigError(f"--run {run_dir}: not a folder")
    rpath = run_dir / "results.json"
    if not rpath.exists():
        raise DataError(
            f"{rpath}: missing; expected a run folder written by `backdoorlab attack --out DIR`"
        )
    try:
        results = json.loads(rpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{rpath}: not valid JSON ({e})") from None
    cfg = results.get("config") if isinstance(results, dict) else None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("train"), dict):
        raise DataError(f'{rpath}: no "config" object with a nested "train" object')
    known = {f.name for f in fields(RunConfig)}
    tknown = {f.name for f in fields(TrainSpec)}
    try:
        spec = TrainSpec(**{k: v for k, v in cfg["train"].items() if k in tknown})
        rc = RunConfig(**{**{k: v for k, v in cfg.items() if k in known}, "train": spec})
    except TypeError as e:
        raise DataError(f'{rpath}: bad "config" ({e})') from None
    return results, rc


def load_run(run_dir: str | Path) -> Run:
    """Rebuild a run folder: data, attack, poisoned training set (checked) and the trained model."""
    from .experiment import prepare
    from .models import load_model

    path = Path(run_dir)
    results, cfg = read_run_config(path)
    mpath = path / "model.safetensors"
    if not mpath.exists():
        raise DataError(f"{mpath}: missing; the run folder has no trained model")
    model = load_model(mpath)
    p = prepare(cfg)
    poisoned = p.attack.poison(p.splits.train, seed=cfg.seed)
    ipath = path / "poison_indices.json"
    if ipath.exists():
        try:
            saved = json.loads(ipath.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(f"{ipath}: not valid JSON ({e})") from None
        if sorted(int(i) for i in saved) != poisoned.indices.tolist():
            raise DataError(
                f"{ipath}: the rebuilt poisoned set does not match the saved indices "
                f"({len(saved)} saved, {len(poisoned.indices)} rebuilt); the data or code changed since the run"
            )
    return Run(path, results, p, model, poisoned)


def defender_split(test: ImageData, fraction: float, seed: int = 0) -> tuple[ImageData, ImageData]:
    """Seeded class-balanced split of ``test`` into the defender's clean part and a disjoint evaluation part."""
    if not 0 < fraction < 1:
        raise ConfigError(f"--clean-fraction must be in (0, 1), got {fraction}")
    g = make_generator(seed)
    perm = torch.randperm(len(test), generator=g)
    y = test.y[perm]
    order = torch.argsort(y, stable=True)
    ys = y[order]
    rank = torch.arange(len(ys)) - torch.searchsorted(ys, ys, side="left")
    counts = torch.bincount(ys, minlength=test.num_classes)
    take = torch.round(counts.double() * fraction).long()[ys]
    pick = torch.zeros(len(test), dtype=torch.bool)
    pick[perm[order[rank < take]]] = True
    if not pick.any() or pick.all():
        raise ConfigError(
            f"--clean-fraction {fraction}: leaves no defender or no evaluation samples out of {len(test)}"
        )
    clean = test.subset(pick).with_(name=f"{test.name}[defender]")
    evaluation = test.subset(~pick).with_(name=f"{test.name}[eval]")
    return clean, evaluation


def protocol_of(defense: Any) -> str:
    """Which of the four protocols a defense implements."""
    from .defenses.base import DataSanitizer, InputDetector, ModelDetector, ModelRepair

    for cls, name in (
        (InputDetector, "input-detector"),
        (DataSanitizer, "data-sanitizer"),
        (ModelRepair, "model-repair"),
        (ModelDetector, "model-detector"),
    ):
        if isinstance(defense, cls):
            return name
    raise ConfigError(
        f"defense {type(defense).__name__}: implements none of {', '.join(PROTOCOLS)}"
    )


def build_defense(name: str, options: dict[str, Any] | None = None, seed: int = 0) -> Any:
    """A registered defense with options; ``seed`` is passed when it takes one and none was given."""
    import inspect

    from .defenses.base import DEFENSES

    load_defenses()
    factory: Any = DEFENSES.get(name)
    opts = dict(options or {})
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}  # type: ignore[assignment]
    if "seed" in params and "seed" not in opts:
        opts["seed"] = seed
    return DEFENSES.create(name, **opts)


def _options_of(defense: Any, given: dict[str, Any]) -> dict[str, Any]:
    from dataclasses import asdict, is_dataclass

    if is_dataclass(defense) and not isinstance(defense, type):
        try:
            return json.loads(json.dumps(asdict(defense), default=str))
        except (TypeError, ValueError):
            pass
    return dict(given)


def _ca_asr(model: nn.Module, data: ImageData, attack: Any, seed: int) -> dict[str, float]:
    from .train import evaluate

    ev = evaluate(model, data, attack, seed=seed)
    return {"clean_acc": float(ev["clean_acc"]), "asr": float(ev["asr"])}


def run_defense(
    name: str,
    run_dir: str | Path,
    *,
    options: dict[str, Any] | None = None,
    clean_fraction: float = 0.1,
    frr: float = 0.01,
    seed: int = 0,
    require: str | None = None,
    run: Run | None = None,
    write: bool = True,
    save_repaired: bool = True,
    eval_limit: int | None = None,
) -> dict[str, Any]:
    """Run defense ``name`` on a run folder and return (and write) its figures.

    ``require`` (e.g. ``"data-sanitizer"``) rejects defenses of another protocol. The result is written
    to ``DIR/defenses/NAME.json``; a repaired model also to ``DIR/defenses/NAME.safetensors``.
    ``eval_limit`` scores on a seeded class-balanced sample of that many evaluation images.
    """
    from .metrics.detection import detection_report, measure, precision_recall, repair_report

    if run is None:
        read_run_config(Path(run_dir))  # fail fast on a bad folder, before any work
    defense = build_defense(name, options, seed)
    proto = protocol_of(defense)
    if require is not None and proto != require:
        raise ConfigError(f"defense {name!r} is a {proto}, not a {require}")
    r = run or load_run(run_dir)
    p, cfg, model, attack = r.prepared, r.prepared.cfg, r.model, r.prepared.attack
    clean, evaluation = defender_split(p.splits.test, clean_fraction, seed)
    if eval_limit is not None and eval_limit < len(evaluation):
        # a seeded class-balanced sample of the evaluation part, for quick runs (the demo)
        evaluation = evaluation.per_class(max(1, eval_limit // evaluation.num_classes), seed=seed)
    eval_seed = cfg.seed + 1
    out: dict[str, Any] = {
        "defense": name,
        "protocol": proto,
        "options": {},
        "run": str(r.path),
        "seed": seed,
        "clean_fraction": clean_fraction,
        "n_defender_clean": len(clean),
        "n_eval": len(evaluation),
    }
    from .defenses.base import DataSanitizer, InputDetector, ModelDetector, ModelRepair

    if isinstance(defense, InputDetector):
        trig = attack.triggered_test(evaluation, seed=eval_seed)
        with measure() as cost:
            defense.fit(model, clean, frr=frr)
            neg = torch.as_tensor(defense.score(evaluation.x)).flatten()
            pos = torch.as_tensor(defense.score(trig.x)).flatten()
        scores = torch.cat([neg, pos])
        labels = torch.cat([torch.zeros(len(neg)), torch.ones(len(pos))])
        out["frr"] = frr
        out.update(detection_report(scores, labels, defense.threshold))
    elif isinstance(defense, DataSanitizer):
        train = r.poisoned.data
        with measure() as cost:
            s, k = defense.score_and_keep(model, train)
            scores = torch.as_tensor(s).flatten()
            keep = torch.as_tensor(k).flatten().bool()
        truth = r.poisoned.is_poisoned
        out.update(detection_report(scores, truth))
        removed = precision_recall((~keep).double(), truth, 0.5)
        out.update({f"removed_{k}": v for k, v in removed.items()})
        out["n_train"] = len(train)
        out["n_removed"] = int((~keep).sum())
        out["n_poison_removed"] = int((~keep & truth).sum())
        from .experiment import train_model

        with measure() as retrain_cost:
            retrained = train_model(p, train.subset(keep))
        out["retrain_seconds"] = retrain_cost.seconds
        before = _ca_asr(model, evaluation, attack, eval_seed)
        after = _ca_asr(retrained, evaluation, attack, eval_seed)
        out.update(repair_report(before, after))
    elif isinstance(defense, ModelRepair):
        with measure() as cost:
            repaired = defense.repair(model, clean)
        before = _ca_asr(model, evaluation, attack, eval_seed)
        after = _ca_asr(repaired, evaluation, attack, eval_seed)
        out.update(repair_report(before, after))
        info = getattr(defense, "info", None)
        if isinstance(info, dict) and info:
            out["info"] = {k: v for k, v in info.items() if k != "options"}
        if write and save_repaired and getattr(repaired, "arch_config", None):
            from .models import save_model

            classes = p.splits.train.classes
            save_model(repaired, r.path / "defenses" / f"{name}.safetensors", classes=classes)
            out["repaired_model"] = str(r.path / "defenses" / f"{name}.safetensors")
    elif isinstance(defense, ModelDetector):
        with measure() as cost:
            res = defense.scan(model, clean)
        out["scan"] = res.to_json()
        out["flagged"] = bool(res.flagged)
        out["score"] = float(res.score)
        if attack.mode != "all-to-all":
            out["true_target"] = attack.target
            out["target_found"] = attack.target in [int(t) for t in res.suspect_targets]
    # a plain sentence from the defense's own rule (what it found, or that it found nothing), and an
    # input detector's FRR measured on clean images that did not set its threshold
    said = out.get("scan", {}).get("info", {}).get("verdict") or getattr(defense, "verdict", None)
    if said:
        out["verdict"] = str(said)
    if getattr(defense, "heldout_frr", None) is not None:
        out["heldout_frr"] = float(defense.heldout_frr)
    out["options"] = _options_of(defense, options or {})
    out["seconds"] = cost.seconds
    out["peak_mem_mb"] = cost.peak_mem_mb
    if write:
        atomic_write_json(r.path / "defenses" / f"{name}.json", out)
    return out


def _summary(res: dict[str, Any]) -> str:
    keys = (
        "auroc",
        "tpr_at_1fpr",
        "precision",
        "recall",
        "clean_acc_before",
        "asr_before",
        "clean_acc_after",
        "asr_after",
        "flagged",
        "score",
        "seconds",
        "peak_mem_mb",
    )
    parts = []
    for k in keys:
        if k in res:
            v = res[k]
            parts.append(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}")
    return " ".join(parts)


def cmd_defend(args: argparse.Namespace) -> int:
    """``backdoorlab defend``: run a defense on a run folder and write DIR/defenses/NAME.json."""
    from .cli import parse_kv

    res = run_defense(
        args.defense,
        args.run,
        options=parse_kv(args.defense_opt, "--defense-opt"),
        clean_fraction=args.clean_fraction,
        frr=args.frr,
        seed=args.seed,
        require="data-sanitizer" if args.command == "sanitize" else None,
    )
    print(f"{args.defense} ({res['protocol']}): {_summary(res)}")
    print(f"wrote {Path(args.run) / 'defenses' / (args.defense + '.json')}")
    return 0


def _add_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--defense", required=True, help="defense name (`backdoorlab list defenses`)")
    sp.add_argument(
        "--run", required=True, help="run folder written by `backdoorlab attack --out DIR`"
    )
    sp.add_argument(
        "--defense-opt", action="append", metavar="K=V", help="defense option (repeatable)"
    )
    sp.add_argument(
        "--clean-fraction",
        type=float,
        default=0.1,
        help="class-balanced fraction of the clean test split given to the defender [0.1]",
    )
    sp.add_argument(
        "--frr",
        type=float,
        default=0.01,
        help="input detectors: false-rejection rate on clean data [0.01]",
    )
    sp.add_argument(
        "--seed", type=int, default=0, help="seed of the defender split and the defense [0]"
    )


def register_cli(subparsers: Any) -> None:
    """Add the ``defend`` and ``sanitize`` subcommands to ``backdoorlab``'s subparsers."""
    sp = subparsers.add_parser(
        "defend", help="run a defense (detector, sanitiser or repair) on an attack run folder"
    )
    _add_args(sp)
    sp.set_defaults(func=cmd_defend)
    sp = subparsers.add_parser(
        "sanitize",
        help="score a run's training set with a data sanitiser, retrain on the kept part",
    )
    _add_args(sp)
    sp.set_defaults(func=cmd_defend)
