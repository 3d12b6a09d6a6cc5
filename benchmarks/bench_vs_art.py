"""Our STRIP, Activation Clustering and Spectral Signatures against IBM ART's, same model, data, process.

ART (``pip install adversarial-robustness-toolbox``, a benchmark-only dependency, never imported by
``src/``) wraps the same torch model with ``art.estimators.classification.PyTorchClassifier``
(``clip_values=(0, 1)``; both sides get the same float [0, 1] inputs). Compared:

* STRIP: ours (``n_perturb`` overlays, threshold at 1% FRR on the defender's clean split) vs.
  ``art.defences.transformer.poisoning.STRIP`` (``mitigate`` on the same clean split, ``predict``
  abstains = flagged). ART's STRIP expects probabilities, so its classifier wraps the model with a
  softmax. ART gives only decisions, so its AUROC is not available.
* Activation Clustering: ours vs. ``ActivationDefence`` (PCA to 10 dims, 2 clusters, "smaller").
* Spectral Signatures: ours vs. ``SpectralSignatureDefense`` (same ``eps`` and 1.5 multiplier).

Prints a table and one JSON line. The model is BadNets on Fashion-MNIST (``badnets_cnn``, 3x3 patch,
target 0, poison ``--rate`` of the training set, 5 epochs), loaded from ``--cache`` if present.
Run: ``PYTHONPATH=src python benchmarks/bench_vs_art.py [--n-train 60000] [--n-eval 2000]``.
"""

from __future__ import annotations

import argparse
import json
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from backdoorlab.attacks.badnets import BadNets
from backdoorlab.data import load_dataset
from backdoorlab.defenses.data_sanitize.activation_clustering import ActivationClustering
from backdoorlab.defenses.data_sanitize.spectral import SpectralSignatures
from backdoorlab.defenses.input_detection.strip import STRIP
from backdoorlab.metrics.detection import detection_report
from backdoorlab.models import create_model
from backdoorlab.models.io import load_model, save_model
from backdoorlab.train import TrainSpec, fit


def sanitizer_figures(keep: np.ndarray | torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
    """Recall of poisons, precision and fraction removed of a keep-mask."""
    keep_t = torch.as_tensor(np.asarray(keep)).bool()
    removed = ~keep_t
    tp = int((removed & truth).sum())
    return {
        "recall": tp / max(1, int(truth.sum())),
        "precision": tp / max(1, int(removed.sum())),
        "removed": int(removed.sum()),
        "clean_removed_frac": float((removed & ~truth).sum()) / max(1, int((~truth).sum())),
    }


def main() -> None:
    """Run both toolkits on the same model and data; print a table and JSON."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", default="/tmp/bdl-cache/strip/patch.safetensors")
    ap.add_argument("--rate", type=float, default=0.1)
    ap.add_argument(
        "--n-train", type=int, default=60000, help="training samples given to the sanitisers"
    )
    ap.add_argument(
        "--n-eval", type=int, default=2000, help="held-out clean (and triggered) inputs for STRIP"
    )
    ap.add_argument("--n-perturb", type=int, default=16)
    ap.add_argument(
        "--eps",
        type=float,
        default=None,
        help="sanitiser eps (default: poisons / target-class size)",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    np.random.seed(0)  # ART draws with the global numpy RNG

    ds = load_dataset("fashion-mnist")
    attack = BadNets(target=0, rate=args.rate)
    pd = attack.poison(ds.train, seed=0)
    cache = Path(args.cache)
    if cache.exists():
        model = load_model(cache)
    else:
        model = fit(
            create_model("badnets_cnn", seed=0),
            pd.data,
            TrainSpec(epochs=5, seed=0, progress=False),
        )
        save_model(model, cache, classes=ds.train.classes)
    model.eval()
    sel = torch.randperm(len(pd.data), generator=torch.Generator().manual_seed(0))[: args.n_train]
    sel = torch.sort(sel).values
    train, truth = pd.data.subset(sel), pd.is_poisoned[sel]
    n_target = int((train.y == attack.target).sum())
    eps = args.eps if args.eps is not None else float(truth.sum()) / n_target
    defender = ds.test.subset(slice(0, 1000))
    held = ds.test.subset(slice(1000, 1000 + args.n_eval))
    trig = attack.triggered_test(held, seed=1)
    results: dict[str, Any] = {
        "setup": {
            "rate": args.rate,
            "n_train": len(train),
            "n_poison": int(truth.sum()),
            "eps": eps,
            "n_eval_clean": len(held),
            "n_eval_triggered": len(trig),
            "n_perturb": args.n_perturb,
            "threads": args.threads,
        }
    }
    labels = torch.cat([torch.zeros(len(held)), torch.ones(len(trig))])

    # ---- ours -------------------------------------------------------------------------------
    t = time.perf_counter()
    strip = STRIP(n_perturb=args.n_perturb, seed=0).fit(model, defender, frr=0.01)
    s = torch.cat([strip.score(held.x), strip.score(trig.x)])
    rep = detection_report(s, labels, strip.threshold)
    results["ours_strip"] = {
        "seconds": time.perf_counter() - t,
        "auroc": rep["auroc"],
        "frr": rep["fpr"],
        "far": 1 - rep["recall"],
        "tpr_at_1fpr": rep["tpr_at_1fpr"],
        "tpr_at_5fpr": rep["tpr_at_5fpr"],
    }
    for name, san in (
        ("ours_ac", ActivationClustering(reduce="pca")),
        ("ours_ss", SpectralSignatures(eps=eps)),
    ):
        t = time.perf_counter()
        scores, keep = san.score_and_keep(model, train)
        secs = time.perf_counter() - t
        results[name] = {
            "seconds": secs,
            "auroc": detection_report(scores, truth)["auroc"],
            **sanitizer_figures(keep, truth),
        }

    # ---- ART --------------------------------------------------------------------------------
    try:
        import art
        from art.defences.detector.poison import ActivationDefence, SpectralSignatureDefense
        from art.defences.transformer.poisoning import STRIP as ArtSTRIP
        from art.estimators.classification import PyTorchClassifier

        results["art_version"] = art.__version__
    except ImportError as e:
        results["art_error"] = f"ART not importable: {e}"
        art = None
    if art is not None:
        x_np = train.x.numpy().astype(np.float32)
        y_onehot = np.eye(10, dtype=np.float32)[train.y.numpy()]

        def classifier(m: nn.Module) -> Any:
            return PyTorchClassifier(
                model=m,
                loss=nn.CrossEntropyLoss(),
                input_shape=(1, 28, 28),
                nb_classes=10,
                clip_values=(0.0, 1.0),
                device_type="cpu",
            )

        clf = classifier(model)
        results["art_layer_names"] = list(clf.layer_names or [])
        try:
            t = time.perf_counter()
            ad = ActivationDefence(clf, x_np, y_onehot)
            _, is_clean = ad.detect_poison(
                nb_clusters=2, nb_dims=10, reduce="PCA", cluster_analysis="smaller"
            )
            results["art_ac"] = {
                "seconds": time.perf_counter() - t,
                **sanitizer_figures(np.asarray(is_clean) == 1, truth),
            }
        except Exception as e:  # report precisely which ART component failed
            results["art_ac"] = {
                "error": f"{type(e).__name__}: {e}",
                "trace": traceback.format_exc()[-800:],
            }
        try:
            t = time.perf_counter()
            ss = SpectralSignatureDefense(
                clf, x_np, y_onehot, expected_pp_poison=eps, batch_size=512, eps_multiplier=1.5
            )
            report, is_clean = ss.detect_poison()
            secs = time.perf_counter() - t
            art_scores = torch.zeros(len(train))
            for k, v in report.items():
                art_scores[int(k)] = float(v)
            results["art_ss"] = {
                "seconds": secs,
                **sanitizer_figures(np.asarray(is_clean) == 1, truth),
            }
        except Exception as e:
            results["art_ss"] = {
                "error": f"{type(e).__name__}: {e}",
                "trace": traceback.format_exc()[-800:],
            }
        try:
            soft = nn.Sequential(model, nn.Softmax(dim=1)).eval()
            t = time.perf_counter()
            art_strip = ArtSTRIP(classifier(soft))(
                num_samples=args.n_perturb, false_acceptance_rate=0.01
            )
            art_strip.mitigate(defender.x.numpy())
            p_clean = art_strip.predict(held.x.numpy())
            p_trig = art_strip.predict(trig.x.numpy())
            secs = time.perf_counter() - t
            flag_c = np.all(p_clean == 0, axis=1)
            flag_t = np.all(p_trig == 0, axis=1)
            results["art_strip"] = {
                "seconds": secs,
                "frr": float(flag_c.mean()),
                "far": float(1 - flag_t.mean()),
                "threshold_entropy": float(art_strip.entropy_threshold),
            }
        except Exception as e:
            results["art_strip"] = {
                "error": f"{type(e).__name__}: {e}",
                "trace": traceback.format_exc()[-800:],
            }

    # ---- table ------------------------------------------------------------------------------
    rows = [
        ("STRIP", "ours_strip", "art_strip", ("auroc", "frr", "far", "seconds")),
        (
            "Activation Clustering",
            "ours_ac",
            "art_ac",
            ("auroc", "recall", "precision", "removed", "seconds"),
        ),
        (
            "Spectral Signatures",
            "ours_ss",
            "art_ss",
            ("auroc", "recall", "precision", "removed", "seconds"),
        ),
    ]
    print(f"setup: {results['setup']}")
    print(f"{'method':30s} {'metric':10s} {'ours':>12s} {'ART':>12s}")
    for title, ours, theirs, keys in rows:
        for k in keys:
            a = results.get(ours, {}).get(k, float("nan"))
            b = results.get(theirs, {}).get(
                k, "error" if "error" in results.get(theirs, {}) else float("nan")
            )
            fa = f"{a:12.4f}" if isinstance(a, float) else f"{a!s:>12}"
            fb = f"{b:12.4f}" if isinstance(b, float) else f"{b!s:>12}"
            print(f"{title:30s} {k:10s} {fa} {fb}")
    line = json.dumps(results, default=float)
    print(line)
    if args.out:
        Path(args.out).write_text(line + "\n")


if __name__ == "__main__":
    main()
