"""Run folders: the one module that writes and reads what ``backdoorlab attack --out DIR`` produces.

A run folder holds ``results.json`` (an ``AttackRun`` record, including the full ``config``),
``model.safetensors`` + ``model.json``, ``poison_indices.json``, ``samples.png``, optionally
``clean_model.safetensors`` and ``learned/NAME.safetensors`` (an attack's learned parts), and
``defenses/NAME.json`` written later by ``backdoorlab defend``. It is written atomically: an
interrupted run leaves nothing half-written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, DataError
from .records import AttackRun
from .utils import atomic_dir, atomic_write_json

if TYPE_CHECKING:
    from torch import nn

    from .experiment import Prepared, RunConfig


def write_run(
    out: str | Path,
    run: AttackRun,
    prepared: Prepared,
    learned: dict[str, nn.Module] | None = None,
) -> Path:
    """Write a run folder atomically: results.json, models, learned parts, poison indices, samples.png."""
    import torch

    from .models import save_model
    from .report.images import save_trigger_grid

    out = Path(out)
    with atomic_dir(out) as tmp:
        classes = prepared.splits.train.classes
        save_model(run.trained_model, tmp / "model.safetensors", classes=classes)
        if run.clean_model is not None:
            save_model(run.clean_model, tmp / "clean_model.safetensors", classes=classes)
        for name, part in (learned or {}).items():
            from safetensors.torch import save_file

            (tmp / "learned").mkdir(exist_ok=True)
            state = {k: v.detach().cpu().contiguous() for k, v in part.state_dict().items()}
            save_file(state, str(tmp / "learned" / f"{name}.safetensors"))
        indices = run.poison_indices if run.poison_indices is not None else torch.zeros(0)
        atomic_write_json(tmp / "poison_indices.json", [int(i) for i in indices.tolist()])
        test = prepared.splits.test
        pick = torch.cat(
            [torch.nonzero(test.y == k).flatten()[:1] for k in range(test.num_classes)]
        )[:10]
        clean = test.x[pick]
        trig = prepared.trigger(clean, torch.Generator().manual_seed(prepared.cfg.seed)).clamp(0, 1)
        save_trigger_grid(clean, trig, tmp / "samples.png", scale=3, title=prepared.trigger.name)
        atomic_write_json(tmp / "results.json", run.replace(path=str(out)).to_json())
    return out


def read_results(run_dir: str | Path) -> tuple[dict[str, Any], RunConfig]:
    """``results.json`` of a run folder and its ``RunConfig``; a clear error for anything else."""
    from .experiment import RunConfig

    path = Path(run_dir)
    if not path.exists():
        raise ConfigError(f"--run {path}: no such folder")
    if not path.is_dir():
        raise ConfigError(f"--run {path}: not a folder")
    rpath = path / "results.json"
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
    try:
        rc = RunConfig.from_dict(cfg, f'{rpath} "config"')
    except ConfigError as e:
        raise DataError(str(e)) from None
    return results, rc


def load_run(run_dir: str | Path) -> AttackRun:
    """Rebuild a run folder: data, attack, poisoned training set (checked) and the trained model."""
    from .experiment import prepare
    from .models import load_model

    path = Path(run_dir)
    results, cfg = read_results(path)
    mpath = path / "model.safetensors"
    if not mpath.exists():
        raise DataError(f"{mpath}: missing; the run folder has no trained model")
    try:
        record = AttackRun.from_json(results)
    except DataError as e:
        raise DataError(f"{path / 'results.json'}: {e}") from None
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
    return record.replace(
        path=str(path),
        trained_model=model,
        prepared=p,
        poison_indices=poisoned.indices,
        poisoned_set=poisoned,
    )
