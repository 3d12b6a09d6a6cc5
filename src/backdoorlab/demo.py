"""``backdoorlab demo``: the main job in one command, offline, in a few minutes on 2 CPU cores.

Trains a clean model and one backdoored model per trigger family of the survey (patch, textured
logo, image filter, invisible), prints a table (clean accuracy, attack success rate, stealth) and
writes a report folder with results.json, table.md, index.html and pictures.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from .data import fashion_mnist_available
from .data.idx import FASHION_MNIST_HINT
from .experiment import RunConfig, prepare, train_model
from .models import save_model
from .pipeline import run_attack, run_defense
from .records import AttackRun, EvalMetrics
from .report.demo import (
    DemoAttackRow,
    DemoDefenseRow,
    DemoSummary,
    demo_markdown,
    write_demo_report,
)
from .report.images import amplified_difference, grid_image
from .train import TrainSpec, evaluate
from .utils import atomic_dir


@dataclass(frozen=True)
class Scenario:
    """One row of the demo table: a label, the attack, its trigger and options."""

    label: str
    attack: str
    trigger: str
    family: str
    options: dict[str, Any] = field(default_factory=dict)


DEMO_DEFENSES = ("strip", "activation-clustering")

SCENARIOS = (
    Scenario("BadNets patch", "badnets", "patch", "patch (replace)", {"size": 3}),
    Scenario("Textured logo", "badnets", "logo", "textured shape / logo (replace)"),
    Scenario("Nashville filter", "badnets", "nashville", "image-wide filter (perturb)"),
    Scenario("LSB steganography", "badnets", "lsb", "invisible (perturb)"),
)


def run_demo(
    out: str | Path = "backdoorlab-demo",
    *,
    epochs: int | None = None,
    seed: int = 0,
    data: str | None = None,
    quick: bool = False,
    scenarios: tuple[Scenario, ...] = SCENARIOS,
    defenses: tuple[str, ...] = DEMO_DEFENSES,
    command: str | None = None,
) -> DemoSummary:
    """Run the demo and write its report folder atomically; returns its ``DemoSummary``."""
    t_start = time.perf_counter()
    if data is None:
        if fashion_mnist_available():
            data = "fashion-mnist"
        else:
            print(
                f"Fashion-MNIST not found: {FASHION_MNIST_HINT}.\n"
                "Falling back to the built-in synthetic colour set (synthetic-signs).",
                file=sys.stderr,
            )
            data = "synthetic-signs"
    epochs = epochs if epochs is not None else (3 if quick else 5)
    spec = TrainSpec(epochs=epochs, progress=None)
    subset = 12000 if quick else None
    base = RunConfig(data=data, train=spec, seed=seed, train_subset=subset)
    print(f"backdoorlab demo: {data}, {epochs} epochs per model, seed {seed}", file=sys.stderr)

    with atomic_dir(out) as tmp:
        p0 = prepare(replace(base, attack="badnets"))
        test = p0.splits.test
        t0 = time.perf_counter()
        clean_model = train_model(p0, p0.splits.train)
        ev = evaluate(clean_model, test)
        clean = EvalMetrics(
            clean_acc=float(ev["clean_acc"]),
            per_class=dict(ev["per_class"]),
            seconds=time.perf_counter() - t0,
        )
        print(
            f"  {'clean':<22} clean_acc={clean.clean_acc:.3f} ({clean.seconds:.0f} s)",
            file=sys.stderr,
        )
        save_model(
            clean_model, tmp / "models" / "clean.safetensors", classes=p0.splits.train.classes
        )
        pick = torch.cat(
            [torch.nonzero(test.y == k).flatten()[:1] for k in range(test.num_classes)]
        )[:8]
        pics, pic_labels = [test.x[pick]], ["clean"]
        runs: dict[str, AttackRun] = {}
        rows: list[DemoAttackRow] = []
        for sc in scenarios:
            cfg = replace(
                base, attack=sc.attack, trigger=sc.trigger, trigger_options=dict(sc.options)
            )
            t0 = time.perf_counter()
            res = run_attack(cfg, tmp / "runs" / _slug(sc.label))
            runs[sc.label] = res
            attack = res.prepared.attack  # the same factory as `backdoorlab attack`
            cev = evaluate(clean_model, test, attack)
            row = DemoAttackRow(
                label=sc.label,
                family=sc.family,
                run=res,
                clean_model_asr=float(cev["asr"]),
                seconds=time.perf_counter() - t0,
            )
            rows.append(row)
            print(
                f"  {sc.label:<22} clean_acc={res.clean_acc:.3f} asr={res.asr:.3f} ({row.seconds:.0f} s)",
                file=sys.stderr,
            )
            x2 = attack.trigger(test.x[pick], torch.Generator().manual_seed(seed)).clamp(0, 1)
            pics += [x2, amplified_difference(test.x[pick], x2)]
            pic_labels += [sc.trigger, f"{sc.trigger} |diff|"]
        drows = _run_defenses(defenses, runs, scenarios, seed)
        summary = DemoSummary(
            data=data,
            epochs=epochs,
            seed=seed,
            seconds=time.perf_counter() - t_start,
            clean=clean,
            attacks=tuple(rows),
            defenses=tuple(drows),
            command=command,
            triggers=grid_image(pics, pic_labels, scale=3),
        )
        write_demo_report(tmp, summary)
    print(demo_markdown(summary))
    print(f"\nreport: {Path(out) / 'index.html'}  ({summary.seconds:.0f} s)")
    return summary


def _slug(label: str) -> str:
    return label.lower().replace(" ", "-")


def _run_defenses(
    names: tuple[str, ...], runs: dict[str, AttackRun], scenarios: tuple[Scenario, ...], seed: int
) -> list[DemoDefenseRow]:
    """Each defense on the first (patch) run, through the same path as ``backdoorlab defend``."""
    if not names or not scenarios:
        return []
    label = scenarios[0].label
    run = runs[label]
    rows = []
    for name in names:
        r = run_defense(run, name, seed=seed, save_repaired=False, eval_limit=2000)
        rows.append(DemoDefenseRow(on=label, record=r))
        print(f"  {name:<22} on {label}: {r.verdict}", file=sys.stderr)
    return rows
