"""The calibrated combined score of ``scan --method all`` on a held-out zoo of clean and trojaned models.

None of these models is a calibration reference (``benchmarks/calibrate_scan_reference.py``): the
clean ones use other seeds (200+) or other widths (``small_cnn`` 24 / 32+BN, ``gap_cnn`` 24+BN), the
trojans span architectures, seeds, triggers (patch, blend, logo, nashville, lsb, warp, sticker),
poisoning rates 1%-10% and targets (four trojans are trained on the whole training set,
the rest, like the references, on the 10k subset). Each model is scanned exactly as the references were (every
scanner at its defaults, 20 clean test images per class, seed 0); then per method the AUROC of
the raw score (clean = 0, trojan = 1), the combined AUROC (score = 1 - Bonferroni-combined
p-value, :mod:`backdoorlab.defenses.model_scan.calibration`), and the false-positive rate on the
held-out clean models / true-positive rate on the trojans at ``ALPHA`` = 0.05::

    OMP_NUM_THREADS=1 python benchmarks/eval_scan_combined.py run     # train + scan (resumes)
    python benchmarks/eval_scan_combined.py table                     # markdown table

Models and scans are cached under ``--cache`` (default ``/work/cache/calib``, shared with the
reference script; names start with ``eval-``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("BACKDOORLAB_NO_PROGRESS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from calibrate_scan_reference import METHODS, MIN_ASR, load_scans, run_zoo

# held-out clean models: (arch key, seed)
EVAL_CLEAN = (
    ("badnets_cnn", 200),
    ("lenet5", 200),
    ("small_cnn16", 200),
    ("small_cnn16bn", 200),
    ("gap_cnn16", 200),
    ("gap_cnn16bn", 200),
    ("small_cnn32bn", 200),
    ("small_cnn32bn", 201),
    ("small_cnn24", 200),
    ("gap_cnn24bn", 200),
)

# trojans: (arch key, trigger, target, poisoning rate, seed)
EVAL_TROJANS = (
    ("badnets_cnn", "patch", 0, 0.10, 300),
    ("lenet5", "patch", 3, 0.05, 301),
    ("small_cnn16bn", "patch", 7, 0.10, 302),
    ("gap_cnn16bn", "patch", 5, 0.10, 303),
    ("badnets_cnn", "patch", 9, 0.01, 304),
    ("badnets_cnn", "blend", 2, 0.10, 305),
    ("lenet5", "blend", 8, 0.10, 306),
    ("badnets_cnn", "logo", 4, 0.10, 307),
    ("gap_cnn16", "logo", 1, 0.05, 308),
    ("badnets_cnn", "nashville", 6, 0.10, 309),
    ("small_cnn16", "nashville", 2, 0.10, 310),
    ("badnets_cnn", "lsb", 8, 0.10, 311),
    ("badnets_cnn", "warp", 1, 0.10, 312),
    ("lenet5", "warp", 6, 0.10, 313),
    ("small_cnn16", "sticker-patch", 3, 0.05, 314),
    ("gap_cnn16bn", "sticker-patch", 9, 0.05, 315),
    ("small_cnn32bn", "patch", 4, 0.02, 316),
    ("gap_cnn24bn", "blend", 0, 0.03, 317),
    ("small_cnn24", "patch", 6, 0.01, 318),
    ("lenet5", "logo", 7, 0.10, 319),
)

# trojans trained on the whole training set (3 epochs): triggers that the 10k subset does not
# implant in 3 epochs (LSB, warp, 1% patches); trained last
EVAL_TROJANS_FULL = (
    ("badnets_cnn", "lsb", 8, 0.10, 320),
    ("badnets_cnn", "warp", 1, 0.10, 321),
    ("badnets_cnn", "patch", 9, 0.01, 322),
    ("lenet5", "nashville", 3, 0.01, 323),
)


def eval_jobs() -> list[tuple[str, dict[str, Any]]]:
    """(name, training job) of every held-out model: clean and trojans interleaved, so a partial
    run has both."""
    clean = [(f"eval-clean-{a}-s{s}", {"arch": a, "seed": s, "epochs": 3}) for a, s in EVAL_CLEAN]
    troj = [
        (
            f"eval-{a}-{trig}-t{t}-r{round(rate * 100)}-s{s}",
            {"arch": a, "seed": s, "epochs": 3, "trigger": trig, "target": t, "rate": rate},
        )
        for a, trig, t, rate, s in EVAL_TROJANS
    ]
    out: list[tuple[str, dict[str, Any]]] = []
    for i in range(max(len(clean), len(troj))):
        out += troj[2 * i : 2 * i + 2] + clean[i : i + 1]
    out += [
        (
            f"eval-{a}-{trig}-t{t}-r{round(rate * 100)}-s{s}-full",
            {
                "arch": a,
                "seed": s,
                "epochs": 3,
                "trigger": trig,
                "target": t,
                "rate": rate,
                "full": True,
            },
        )
        for a, trig, t, rate, s in EVAL_TROJANS_FULL
    ]
    return out


def auroc(neg: list[float], pos: list[float]) -> float:
    """Probability that a random positive scores above a random negative (ties count 1/2)."""
    if not neg or not pos:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def cmd_table(cache: Path, methods: list[str], min_asr: float) -> None:
    """Markdown table: AUROC / FPR / TPR per method and combined, over models scanned by all methods."""
    from backdoorlab.defenses.model_scan import calibration

    names = [n for n, _ in eval_jobs()]
    per = {m: {r["model"]["name"]: r for r in load_scans(cache, names, m)} for m in methods}
    done = [n for n in names if all(n in per[m] for m in methods)]
    rows = []
    for n in done:
        meta = per[methods[0]][n]["model"]
        if not meta["clean"] and (meta.get("asr") or 0) < min_asr:
            continue  # the attack did not implant: not a trojan
        ps = {m: calibration.p_value(m, per[m][n]["score"]) for m in methods}
        rows.append(
            {
                "name": n,
                "clean": meta["clean"],
                "asr": meta.get("asr"),
                "raw": {m: per[m][n]["score"] for m in methods},
                "flagged": {m: per[m][n]["flagged"] for m in methods},
                "p": ps,
                "combined": calibration.combine(list(ps.values())),
            }
        )
    metas = [
        json.loads(p.read_text())
        for n in names
        if (p := cache / "models" / f"{n}.meta.json").exists()
    ]
    failed = [m["name"] for m in metas if not m["clean"] and (m.get("asr") or 0) < min_asr]
    cl = [r for r in rows if r["clean"]]
    tr = [r for r in rows if not r["clean"]]
    a = calibration.ALPHA
    print(
        f"{len(cl)} held-out clean, {len(tr)} trojaned models (ASR >= {min_asr}; "
        f"not implanted, left out: {', '.join(failed) or 'none'}); alpha = {a}\n"
    )
    print(
        "| score | AUROC | FPR at own threshold | TPR at own threshold "
        f"| FPR at p <= {a} | TPR at p <= {a} |"
    )
    print("|---|---|---|---|---|---|")

    def rate(rs: list[dict[str, Any]], f: Any) -> str:
        k = sum(bool(f(r)) for r in rs)
        return f"{k}/{len(rs)}"

    for m in methods:
        print(
            f"| {m} (raw score) | {auroc([r['raw'][m] for r in cl], [r['raw'][m] for r in tr]):.3f} "
            f"| {rate(cl, lambda r, m=m: r['flagged'][m])} | {rate(tr, lambda r, m=m: r['flagged'][m])} "
            f"| {rate(cl, lambda r, m=m: r['p'][m] <= a)} | {rate(tr, lambda r, m=m: r['p'][m] <= a)} |"
        )
    comb = auroc([1 - r["combined"] for r in cl], [1 - r["combined"] for r in tr])
    print(
        f"| **combined** (1 - Bonferroni p) | **{comb:.3f}** "
        f"| {rate(cl, lambda r: any(r['flagged'].values()))} "
        f"| {rate(tr, lambda r: any(r['flagged'].values()))} "
        f"| {rate(cl, lambda r: r['combined'] <= a)} | {rate(tr, lambda r: r['combined'] <= a)} |"
    )
    print("\nper model:\n")
    print(
        "| model | CA | ASR | "
        + " | ".join(f"{m} score (p)" for m in methods)
        + " | combined p | verdict |"
    )
    print("|---|---|---|" + "---|" * len(methods) + "---|---|")
    for r in cl + tr:
        meta = per[methods[0]][r["name"]]["model"]
        asr = "" if r["asr"] is None else f"{r['asr']:.3f}"
        cells = " | ".join(f"{r['raw'][m]:.3g} ({r['p'][m]:.2g})" for m in methods)
        print(
            f"| {r['name']} | {meta['clean_acc']:.3f} | {asr} | {cells} | {r['combined']:.2g} "
            f"| {'backdoored' if r['combined'] <= a else 'clean'} |"
        )


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("phase", choices=["run", "table"])
    ap.add_argument("--cache", default="/work/cache/calib")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--only", default="*", help="glob of model names")
    ap.add_argument(
        "--min-asr",
        type=float,
        default=MIN_ASR,
        help=f"trojans below this ASR are left out [{MIN_ASR}]",
    )
    args = ap.parse_args(argv)
    cache = Path(args.cache)
    methods = [m for m in args.methods.split(",") if m]
    if args.phase == "run":
        run_zoo(cache, eval_jobs(), methods, args.only)
    else:
        cmd_table(cache, methods, args.min_asr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
