"""Plain clean-label vs label-consistent poisoning (Turner, Tsipras & Madry, arXiv 1912.02771, 2019).

Fashion-MNIST, target class 0 (T-shirt/top), the BadNets CNN, a white patch trigger in the
bottom-right corner. Three victims trained identically (same seed and spec): on clean data, on
data with ``--count`` target-class images triggered (plain clean-label), and on data where the same
number of target-class images are first PGD-perturbed against a clean reference model and then
triggered (label-consistent). Prints and writes CA (clean test accuracy) and ASR (triggered
non-target test images classified as the target). Runs in ~10 min on one CPU thread.

    PYTHONPATH=src python benchmarks/exp_clean_label.py            # defaults: the reported run
    PYTHONPATH=src python benchmarks/exp_clean_label.py --count 2000 --skip-clean --eps 0.125
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from backdoorlab.attacks import CleanLabel, LabelConsistent, PoisoningAttack
from backdoorlab.data import load_dataset
from backdoorlab.metrics import lp_norms, psnr, ssim
from backdoorlab.models import create_model
from backdoorlab.train import TrainSpec, accuracy, evaluate, fit
from backdoorlab.triggers import PatchTrigger


def victim(train: Any, spec: TrainSpec) -> torch.nn.Module:
    """A fresh BadNets CNN (seed 0) trained on ``train``."""
    model = create_model("badnets_cnn", input_shape=train.shape, seed=0)
    return fit(model, train, spec)


def run_attack(
    attack: PoisoningAttack, train: Any, test: Any, spec: TrainSpec, seed: int
) -> dict[str, Any]:
    """Poison, train a victim, evaluate; plus the stealth of the poisoned images."""
    t0 = time.perf_counter()
    pois = attack.poison(train, seed=seed)
    t_poison = time.perf_counter() - t0
    model = victim(pois.data, spec)
    res = evaluate(model, test, attack)
    x0, x1 = train.x[pois.indices], pois.data.x[pois.indices]
    p = psnr(x0, x1).double()
    row = {
        "attack": attack.name,
        "ca": res["clean_acc"],
        "asr": res["asr"],
        "poisoned": len(pois.indices),
        "poison_seconds": round(t_poison, 1),
        "poison_linf": lp_norms(x0, x1)["linf"],
        "poison_psnr": float(p[torch.isfinite(p)].mean()),
        "poison_ssim": float(ssim(x0, x1).double().mean()),
        "describe": attack.describe(),
    }
    if isinstance(attack, LabelConsistent) and attack.reference_model is not None:
        ref = attack.reference_model
        # how hard the reference model finds the poisons, before and after PGD + trigger
        row["ref_acc_originals"] = accuracy(ref, train.subset(pois.indices))
        row["ref_acc_poisons"] = accuracy(ref, pois.data.subset(pois.indices))
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--count", type=int, default=3000, help="poisoned target-class images")
    ap.add_argument("--patch", type=int, default=3, help="patch side in pixels")
    ap.add_argument("--eps", type=float, default=16 / 255)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--ref-epochs", type=int, default=3)
    ap.add_argument(
        "--ref-adv-eps", type=float, default=0.0, help="adversarially train the reference"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-clean", action="store_true")
    ap.add_argument("--skip-plain", action="store_true")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: no contention)")
    ap.add_argument("--out", default="runs/exp_clean_label.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    splits = load_dataset("fashion-mnist")
    train, test = splits.train, splits.test
    spec = TrainSpec(epochs=args.epochs, progress=False, seed=args.seed)
    trigger = PatchTrigger(size=args.patch)
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    if not args.skip_clean:
        plain_for_asr = CleanLabel(trigger, target=0, count=args.count)
        res = evaluate(victim(train, spec), test, plain_for_asr)
        rows.append({"attack": "none (clean model)", "ca": res["clean_acc"], "asr": res["asr"]})
        print(rows[-1], flush=True)
    if not args.skip_plain:
        rows.append(
            run_attack(CleanLabel(trigger, 0, count=args.count), train, test, spec, args.seed)
        )
        print({k: v for k, v in rows[-1].items() if k != "describe"}, flush=True)
    lc = LabelConsistent(
        trigger,
        0,
        count=args.count,
        eps=args.eps,
        steps=args.steps,
        ref_epochs=args.ref_epochs,
        ref_adv_eps=args.ref_adv_eps,
    )
    rows.append(run_attack(lc, train, test, spec, args.seed))
    print({k: v for k, v in rows[-1].items() if k != "describe"}, flush=True)
    out = {"settings": vars(args), "train_spec": spec.to_dict(), "rows": rows}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"\n{'attack':<22} {'CA':>7} {'ASR':>7}")
    for r in rows:
        print(f"{r['attack']:<22} {r['ca']:7.4f} {r['asr']:7.4f}")


if __name__ == "__main__":
    main()
