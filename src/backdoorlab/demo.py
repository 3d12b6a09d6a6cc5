"""``backdoorlab demo``: the main job in one command, offline, in a few minutes on 2 CPU cores.

Trains a clean model and one backdoored model per trigger family of the survey (patch, textured
logo, image filter, invisible), prints a table (clean accuracy, attack success rate, stealth) and
writes a report folder with results.json, table.md, index.html and pictures.
"""

from __future__ import annotations

import html
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
from .records import AttackRun
from .report.images import amplified_difference, grid_image, save_png
from .train import TrainSpec, evaluate
from .triggers import TRIGGERS
from .utils import atomic_dir, atomic_write_bytes, atomic_write_json


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


def _fmt(v: float) -> str:
    return "inf" if v == float("inf") else f"{v:.3f}"


def run_demo(
    out: str | Path = "backdoorlab-demo",
    *,
    epochs: int | None = None,
    seed: int = 0,
    data: str | None = None,
    quick: bool = False,
    scenarios: tuple[Scenario, ...] = SCENARIOS,
    defenses: tuple[str, ...] = DEMO_DEFENSES,
) -> dict[str, Any]:
    """Run the demo and write its report folder atomically; returns the results tables."""
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
    rows: list[dict[str, Any]] = []
    print(f"backdoorlab demo: {data}, {epochs} epochs per model, seed {seed}", file=sys.stderr)

    with atomic_dir(out) as tmp:
        p0 = prepare(replace(base, attack="badnets"))
        test = p0.splits.test
        t0 = time.perf_counter()
        clean_model = train_model(p0, p0.splits.train)
        ev = evaluate(clean_model, test)
        rows.append(
            {
                "model": "clean",
                "family": "-",
                "trigger": "-",
                "clean_acc": ev["clean_acc"],
                "asr": None,
                "psnr": None,
                "ssim": None,
                "seconds": time.perf_counter() - t0,
            }
        )
        _print_row(rows[-1])
        save_model(
            clean_model, tmp / "models" / "clean.safetensors", classes=p0.splits.train.classes
        )
        pick = torch.cat(
            [torch.nonzero(test.y == k).flatten()[:1] for k in range(test.num_classes)]
        )
        pick = pick[:8]
        pics, pic_labels = [test.x[pick]], ["clean"]
        runs: dict[str, AttackRun] = {}
        for sc in scenarios:
            cfg = replace(
                base, attack=sc.attack, trigger=sc.trigger, trigger_options=dict(sc.options)
            )
            t0 = time.perf_counter()
            run_dir = tmp / "runs" / _slug(sc.label)
            res = run_attack(cfg, run_dir)
            runs[sc.label] = res
            cev = evaluate(clean_model, test, res.prepared.attack)
            row = {
                "model": sc.label,
                "family": sc.family,
                "trigger": sc.trigger,
                "clean_acc": res.clean_acc,
                "asr": res.asr,
                "clean_model_asr": cev["asr"],
                "psnr": res.stealth["psnr"],
                "ssim": res.stealth["ssim"],
                "seconds": time.perf_counter() - t0,
            }
            rows.append(row)
            _print_row(row)
            trig = TRIGGERS.create(sc.trigger, **sc.options)
            x2 = trig(test.x[pick], torch.Generator().manual_seed(seed)).clamp(0, 1)
            pics += [x2, amplified_difference(test.x[pick], x2)]
            pic_labels += [sc.trigger, f"{sc.trigger} |diff|"]
        drows = _run_defenses(defenses, runs, scenarios, seed)
        summary = {
            "data": data,
            "epochs": epochs,
            "seed": seed,
            "rows": rows,
            "defenses": drows,
            "seconds": time.perf_counter() - t_start,
        }
        _write_report(tmp, summary, grid_image(pics, pic_labels, scale=3))
    print(_table(rows))
    if drows:
        print()
        print(_defense_table(drows))
    print(f"\nreport: {Path(out) / 'index.html'}  ({summary['seconds']:.0f} s)")
    return summary


def _slug(label: str) -> str:
    return label.lower().replace(" ", "-")


def _run_defenses(
    names: tuple[str, ...], runs: dict[str, AttackRun], scenarios: tuple[Scenario, ...], seed: int
) -> list[dict[str, Any]]:
    """Each defense on the first (patch) run, through the same path as ``backdoorlab defend``."""
    if not names or not scenarios:
        return []
    label = scenarios[0].label
    run = runs[label]
    rows = []
    for name in names:
        r = run_defense(run, name, seed=seed, save_repaired=False, eval_limit=2000)
        row = {
            "defense": name,
            "on": label,
            "protocol": r.family,
            "auroc": getattr(r, "auroc", None),
            "detail": r.verdict,
            "seconds": r.seconds,
            "record": r.to_json(),
        }
        rows.append(row)
        print(f"  {name:<22} on {label}: {r.verdict}", file=sys.stderr)
    return rows


def _print_row(r: dict[str, Any]) -> None:
    asr = "-" if r["asr"] is None else f"{r['asr']:.3f}"
    print(
        f"  {r['model']:<22} clean_acc={r['clean_acc']:.3f} asr={asr} ({r['seconds']:.0f} s)",
        file=sys.stderr,
    )


def _table(rows: list[dict[str, Any]]) -> str:
    head = "| model | trigger family | clean acc | ASR | ASR on clean model | PSNR | SSIM |\n|---|---|---|---|---|---|---|"
    lines = [head]
    for r in rows:

        def f(k: str, r: dict[str, Any] = r) -> str:
            v = r.get(k)
            return "-" if v is None else _fmt(float(v))

        lines.append(
            f"| {r['model']} | {r['family']} | {f('clean_acc')} | {f('asr')} | {f('clean_model_asr')} | {f('psnr')} | {f('ssim')} |"
        )
    return "\n".join(lines)


def _defense_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| defense | on model | kind | AUROC | result |", "|---|---|---|---|---|"]
    for r in rows:
        au = "-" if r.get("auroc") is None else _fmt(float(r["auroc"]))
        lines.append(f"| {r['defense']} | {r['on']} | {r['protocol']} | {au} | {r['detail']} |")
    return "\n".join(lines)


def _write_report(tmp: Path, summary: dict[str, Any], picture: Any) -> None:
    atomic_write_json(tmp / "results.json", summary)
    table = _table(summary["rows"])
    dtable = _defense_table(summary["defenses"]) if summary["defenses"] else ""
    md = f"# backdoorlab demo ({summary['data']})\n\n{table}\n\n{dtable}\n"
    atomic_write_bytes(tmp / "table.md", md.encode())
    save_png(picture, tmp / "triggers.png")
    cells = []
    for r in summary["rows"]:
        vals = (
            r["model"],
            r["family"],
            _fmt(r["clean_acc"]),
            "-" if r["asr"] is None else _fmt(r["asr"]),
            "-" if r.get("clean_model_asr") is None else _fmt(r["clean_model_asr"]),
            "-" if r.get("psnr") is None else _fmt(r["psnr"]),
            "-" if r.get("ssim") is None else _fmt(r["ssim"]),
        )
        cells.append("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in vals) + "</tr>")
    dcells = []
    for r in summary["defenses"]:
        au = "-" if r.get("auroc") is None else _fmt(float(r["auroc"]))
        dvals = (r["defense"], r["on"], r["protocol"], au, r["detail"])
        dcells.append("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in dvals) + "</tr>")
    dsec = ""
    if dcells:
        dsec = (
            "<h2>Defenses</h2><p>Each defense sees only the model, a clean defender split of the test "
            "set (and, for sanitisers, the training set); figures are scored afterwards.</p>"
            '<table class="def"><tr><th>defense</th><th>on model</th><th>kind</th><th>AUROC</th><th>result</th></tr>'
            + "".join(dcells)
            + "</table>"
        )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>backdoorlab demo</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:64em}}table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #bbb;padding:4px 10px;text-align:right}}td:first-child,td:nth-child(2){{text-align:left}}img{{image-rendering:pixelated;max-width:100%}}table.def td{{text-align:left}}</style></head>
<body><h1>backdoorlab demo</h1>
<p>Data: <b>{html.escape(summary["data"])}</b>, {summary["epochs"]} epochs per model, seed {summary["seed"]}, {summary["seconds"]:.0f} s.
Clean accuracy is on the clean test set; ASR (attack success rate) is the fraction of triggered test images whose true class is not the target that the model assigns to the target; the clean model's ASR shows what the trigger does without a backdoor.</p>
<table><tr><th>model</th><th>trigger family</th><th>clean acc</th><th>ASR</th><th>ASR on clean model</th><th>PSNR (dB)</th><th>SSIM</th></tr>{"".join(cells)}</table>
{dsec}
<h2>Triggers</h2><p>Rows: clean test images, each trigger, and its amplified difference.</p><img src="triggers.png" alt="triggers">
<p>Run folders (model, results.json, samples.png, defenses/) are under <code>runs/</code>.</p>
</body></html>"""
    atomic_write_bytes(tmp / "index.html", page.encode())
