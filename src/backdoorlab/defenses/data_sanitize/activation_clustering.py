"""Activation Clustering: poisoned samples form their own cluster in the last hidden layer.

Chen, Carvalho, Baracaldo, Ludwig, Edwards, Lee, Molloy & Srivastava, "Detecting Backdoor Attacks
on Deep Neural Networks by Activation Clustering", AAAI SafeAI workshop 2019 (arXiv 1811.03728).
Sec. 4 (Algorithm 1): run the training set through the model, take the last hidden layer's
activations, segment them by label, reduce each segment to 10 dimensions with ICA, split it with
2-means and analyse the clusters (Sec. 4.2): *relative size* (a cluster holding at most ~35% of its
class is poisonous when the attack poisons a minority of the class) or the *silhouette score* (how
well two clusters fit; high in poisoned classes). Samples in a poisonous cluster are removed.

Implementation: all on torch. FastICA (Hyvarinen 1999, symmetric, log-cosh contrast) after PCA
whitening to 10 components (``reduce="pca"``: the plain, unwhitened PCA projection, as in IBM ART's
default). After whitening ICA is an orthogonal rotation, which leaves k-means unchanged, so "ica"
equals whitened PCA for the clustering; unwhitened PCA weights the directions by their variance; k-means++ seeding and Lloyd
iterations with ``n_init`` restarts; the silhouette on a seeded subsample of at most 2,000 points.

Cluster analysis (``criterion``: one rule, or a ``+``-joined set; a class is flagged if any fires):

* ``"size"`` (paper's relative size): flag the smaller cluster of a class if it holds at most
  ``size_threshold`` (0.35) of the class;
* ``"silhouette"``: flag the smaller cluster of a class whose silhouette is an outlier among the
  classes (robust z-score, median/MAD, above ``silhouette_z``); calibrated on the classes
  themselves, so it assumes most classes are clean (true for all-to-one attacks);
* ``"loss"`` (ours): flag the *lower-loss* cluster of a class when the two clusters' median loss
  quantiles differ by at least ``loss_gap`` (0.45). Each sample's training loss under the model is
  ranked in the whole training set; backdoor samples are fitted far tighter than clean ones (the
  observation behind Anti-Backdoor Learning, Li, Lyu, Koren, Lyu, Li & Ma, NeurIPS 2021, Sec. 3).
  This covers poison that is half of its class or more -- all-to-one poisoning of 10% of a
  10-class set -- where the size rule cannot fire. Threshold: the largest gap over the 60 classes
  of 6 clean Fashion-MNIST models (5 architectures) was 0.37 (``benchmarks/calibrate_sanitizers.py``);
  10 held-out clean models (other seeds, width 32, 2 and 10 epochs) stayed at or below 0.41. It cannot see poison whose target class is
  already fitted as tightly as the trigger (e.g. Trouser or Bag on Fashion-MNIST: gaps 0.01, 0.22);
* ``"either"`` = ``"size+silhouette"``; the default is ``"size+loss"``.

Suspicion score (continuous, for AUROC): ``2 * [in a flagged cluster] + [in the class's suspect
cluster] + d / (d + median d)``; the suspect cluster is the lower-loss one when the loss rule fires,
else the smaller one; ``d`` = distance to the other (presumed clean) cluster's centroid in the
reduced space;
``keep_mask`` keeps samples with score < 2 (not in a flagged cluster).

Deviations: ``reduce`` defaults to unwhitened PCA (ART's default) rather than the paper's ICA: on the
tiny BadNets test model (tests/test_sanitizers.py) whitened components (ICA) let 2-means split off a
small natural sub-cluster of the target class (poison recall 0.35) while unwhitened PCA isolates the
poisons (recall 0.83); ``reduce="ica"`` gives the paper's variant. The paper's third analysis
(exclusionary reclassification, retraining without each cluster) is not implemented: measured with
two 2-epoch retrains on Fashion-MNIST, clean clusters (2-means splits classes along their borders
with neighbouring classes) were reclassified as their label as rarely as poison clusters (0.00-0.2),
so the paper's ratio did not separate them. The silhouette rule's outlier test across classes and
the loss rule are our additions (the paper gives no number).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ...data.core import ImageData
from ...errors import ConfigError
from ...utils import make_generator
from ..base import DEFENSES, DataSanitizer, SanitizerOptions
from ..features import class_groups, loss_quantiles, reps_and_logits, sanitizer_labels

RULES: dict[str, tuple[str, ...]] = {
    "size": ("size",),
    "silhouette": ("silhouette",),
    "loss": ("loss",),
    "either": ("size", "silhouette"),
    "all": ("size", "silhouette", "loss"),
}
CRITERIA = tuple(RULES)
# Loss rule threshold: largest clean-class loss gap over 60 classes of 6 clean Fashion-MNIST models
# (5 architectures, benchmarks/calibrate_sanitizers.py) was 0.37; 0.45 leaves a margin (docs/defenses.md).
LOSS_GAP = 0.45


def pca_whiten(x: torch.Tensor, k: int, whiten: bool = True) -> torch.Tensor:
    """Project centred ``x`` ``(n, D)`` on its top ``k`` principal axes (scaled to unit variance if ``whiten``)."""
    r = x.double() - x.double().mean(0, keepdim=True)
    k = max(1, min(k, r.shape[0] - 1, r.shape[1]))
    u, s, _ = torch.linalg.svd(r, full_matrices=False)
    if not whiten:
        return u[:, :k] * s[:k]
    return u[:, :k] * (r.shape[0] - 1) ** 0.5 * (s[:k] > 1e-10 * s[0]).double()


def fast_ica(
    x: torch.Tensor, k: int = 10, iters: int = 200, tol: float = 1e-5, seed: int = 0
) -> torch.Tensor:
    """Independent components ``(n, k)`` of ``x`` ``(n, D)``: PCA whitening, symmetric FastICA (log-cosh)."""
    z = pca_whiten(x, k)  # (n, k), whitened
    n, kk = z.shape
    g = make_generator(seed)
    w = torch.randn(kk, kk, generator=g, dtype=torch.float64)

    def sym_decorrelate(m: torch.Tensor) -> torch.Tensor:
        ev, evec = torch.linalg.eigh(m @ m.T)
        return (evec * ev.clamp_min(1e-12).rsqrt()) @ evec.T @ m

    w = sym_decorrelate(w)
    for _ in range(iters):
        wx = z @ w.T  # (n, k)
        gwx = torch.tanh(wx)
        g_prime = 1 - gwx * gwx
        w_new = sym_decorrelate(gwx.T @ z / n - g_prime.mean(0).unsqueeze(1) * w)
        done = float((torch.einsum("ij,ij->i", w_new, w).abs() - 1).abs().max()) < tol
        w = w_new
        if done:
            break
    return z @ w.T


def kmeans(
    x: torch.Tensor, k: int = 2, n_init: int = 4, iters: int = 100, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means++ / Lloyd with ``n_init`` seeded restarts: labels ``(n,)`` and centroids ``(k, d)``."""
    g = make_generator(seed)
    x = x.double()
    n = len(x)
    best: tuple[float, torch.Tensor, torch.Tensor] | None = None
    for _ in range(n_init):
        cent = x[torch.randint(0, n, (1,), generator=g)]
        while len(cent) < k:
            d2 = torch.cdist(x, cent).pow(2).min(1).values
            p = d2 / d2.sum() if float(d2.sum()) > 0 else torch.full((n,), 1.0 / n, dtype=x.dtype)
            cent = torch.cat([cent, x[torch.multinomial(p, 1, generator=g)]])
        lab = torch.zeros(n, dtype=torch.long)
        for it in range(iters):
            new = torch.cdist(x, cent).argmin(1)
            if it > 0 and torch.equal(new, lab):
                break
            lab = new
            counts = torch.bincount(lab, minlength=k).clamp_min(1).unsqueeze(1).double()
            sums = torch.zeros(k, x.shape[1], dtype=x.dtype).index_add_(0, lab, x)
            empty = torch.bincount(lab, minlength=k) == 0
            cent = torch.where(empty.unsqueeze(1), cent, sums / counts)
        inertia = float(torch.cdist(x, cent).pow(2).gather(1, lab.view(-1, 1)).sum())
        if best is None or inertia < best[0]:
            best = (inertia, lab.clone(), cent.clone())
    assert best is not None
    return best[1], best[2]


def silhouette(x: torch.Tensor, labels: torch.Tensor, max_n: int = 2000, seed: int = 0) -> float:
    """Mean silhouette coefficient (Rousseeuw 1987) on a seeded subsample of at most ``max_n`` points."""
    if len(x) > max_n:
        idx = torch.randperm(len(x), generator=make_generator(seed))[:max_n]
        x, labels = x[idx], labels[idx]
    k = int(labels.max()) + 1 if len(labels) else 0
    if k < 2 or len(x) < 3:
        return 0.0
    d = torch.cdist(x.double(), x.double())
    onehot = torch.nn.functional.one_hot(labels, k).double()  # (n, k)
    sums = d @ onehot  # (n, k): total distance to each cluster
    counts = onehot.sum(0)  # (k,)
    own = labels
    own_cnt = counts[own]
    a = sums.gather(1, own.view(-1, 1)).flatten() / (own_cnt - 1).clamp_min(1)
    mean_other = sums / counts.clamp_min(1)
    mean_other = mean_other.scatter(1, own.view(-1, 1), float("inf"))
    mean_other[:, counts == 0] = float("inf")
    b = mean_other.min(1).values
    s = (b - a) / torch.maximum(a, b).clamp_min(1e-12)
    s = torch.where(own_cnt > 1, s, torch.zeros_like(s))
    return float(s.mean())


def cluster_stats(
    model: nn.Module,
    train: ImageData,
    layer: str = "hidden",
    labels: str = "given",
    n_components: int = 10,
    reduce: str = "pca",
    n_init: int = 4,
    seed: int = 0,
    batch_size: int = 1024,
) -> list[dict[str, Any]]:
    """Per class: Activation Clustering's 2-means split and the figures its analyses use.

    Each row: ``class``, ``index`` (sample indices), ``cluster`` (0/1 per sample), ``small_cluster``,
    ``relative_size`` (of the smaller cluster), ``silhouette``, ``distance`` (``(n, 2)``: of each sample to
    each cluster's centroid), ``median_loss`` (per cluster: the model's
    cross-entropy on the given labels), ``low_loss_cluster`` and ``loss_gap``: the difference of
    the two clusters' median loss *quantiles*, each sample's loss ranked in the whole training set
    (scale-free, in [0, 1]). Classes with fewer than 4 samples are left out.
    """
    acts, logits = reps_and_logits(model, train.x, layer, batch_size)
    group = sanitizer_labels(model, train, labels, batch_size, logits)
    loss, q = loss_quantiles(logits, train.y)
    rows: list[dict[str, Any]] = []
    for idx in class_groups(group):
        if len(idx) < 4:
            continue
        red = (
            fast_ica(acts[idx], n_components, seed=seed)
            if reduce == "ica"
            else pca_whiten(acts[idx], n_components, whiten=False)
        )
        lab, cent = kmeans(red, 2, n_init, seed=seed)
        counts = torch.bincount(lab, minlength=2)
        small = int(counts.argmin())
        d = torch.cdist(red, cent)  # (n, 2): distance to each centroid
        med = [float(loss[idx][lab == j].median()) if counts[j] else float("nan") for j in (0, 1)]
        qmed = [float(q[idx][lab == j].median()) if counts[j] else 0.5 for j in (0, 1)]
        low = int(qmed[1] < qmed[0])
        rows.append(
            {
                "class": int(group[idx[0]]),
                "index": idx,
                "cluster": lab,
                "small_cluster": small,
                "relative_size": float(counts[small]) / len(idx),
                "silhouette": silhouette(red, lab, seed=seed),
                "distance": d.float(),
                "median_loss": med,
                "low_loss_cluster": low,
                "loss_gap": abs(qmed[0] - qmed[1]),
            }
        )
    return rows


@DEFENSES.register(
    "activation-clustering",
    "Activation Clustering (Chen et al. 2019): ICA + 2-means of last-hidden activations per class, data sanitiser",
    paper='Chen, Carvalho, Baracaldo, Ludwig, Edwards, Lee, Molloy & Srivastava, "Detecting Backdoor Attacks on Deep Neural Networks by Activation Clustering", AAAI SafeAI workshop 2019',
    aliases=("ac",),
)
@dataclass(kw_only=True)
class ActivationClustering(SanitizerOptions, DataSanitizer):
    """Chen et al. 2019 Activation Clustering; cluster analysis by relative size, silhouette and/or loss.

    Options: ``layer``, ``labels``, ``batch_size`` (:class:`SanitizerOptions`) and those below.
    """

    n_components: int = 10
    reduce: str = "pca"
    criterion: str = "size+loss"
    size_threshold: float = 0.35
    silhouette_z: float = 3.5
    loss_gap: float = LOSS_GAP
    n_init: int = 4
    seed: int = 0
    rules: set[str] = field(init=False, repr=False, compare=False)
    report: dict[str, dict[str, Any]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    name = "activation-clustering"

    def __post_init__(self) -> None:
        reduce, criterion = self.reduce, self.criterion
        size_threshold, loss_gap = self.size_threshold, self.loss_gap
        if reduce not in ("ica", "pca"):
            raise ConfigError(
                f"activation-clustering: bad reduce {reduce!r}: expected 'ica' or 'pca'"
            )
        rules = set(RULES[criterion]) if criterion in RULES else set(str(criterion).split("+"))
        if not rules or not rules <= set(RULES["all"]):
            raise ConfigError(
                f"activation-clustering: bad criterion {criterion!r}: expected one of "
                f"{', '.join(CRITERIA)} or a '+'-joined set of size, silhouette, loss"
            )
        if not 0 < size_threshold < 0.5 + 1e-9:
            raise ConfigError(
                f"activation-clustering: size_threshold must be in (0, 0.5], got {size_threshold}"
            )
        if not 0 < loss_gap <= 1:
            raise ConfigError(f"activation-clustering: loss_gap must be in (0, 1], got {loss_gap}")
        self.n_components = int(self.n_components)
        self.rules = rules
        self.size_threshold = float(size_threshold)
        self.silhouette_z = float(self.silhouette_z)
        self.loss_gap = float(loss_gap)
        self.n_init = int(self.n_init)
        self.seed = int(self.seed)
        self.batch_size = int(self.batch_size)

    def score(self, model: nn.Module, train: ImageData) -> torch.Tensor:
        """Suspicion ``(N,)``: >= 2 in a flagged cluster, [1, 2) in a class's suspect cluster, else [0, 1).

        A class's suspect cluster is its lower-loss cluster when the loss rule fires, else its
        smaller cluster; the fractional part ranks samples by their distance to the other cluster.
        """
        rows = cluster_stats(
            model,
            train,
            layer=self.layer,
            labels=self.labels,
            n_components=self.n_components,
            reduce=self.reduce,
            n_init=self.n_init,
            seed=self.seed,
            batch_size=self.batch_size,
        )
        sils = torch.tensor([r["silhouette"] for r in rows], dtype=torch.float64)
        med = sils.median() if len(sils) else torch.tensor(0.0)
        mad = (
            (sils - med).abs().median().clamp_min(1e-6) * 1.4826 if len(sils) else torch.tensor(1.0)
        )
        out = torch.zeros(len(train))
        self.report = {}
        for r in rows:
            idx, lab = r["index"], r["cluster"]
            z = float((r["silhouette"] - med) / mad)
            by_size = "size" in self.rules and r["relative_size"] <= self.size_threshold
            by_sil = "silhouette" in self.rules and z > self.silhouette_z
            by_loss = "loss" in self.rules and r["loss_gap"] >= self.loss_gap
            suspect = r["low_loss_cluster"] if by_loss else r["small_cluster"]
            flagged = by_size or by_sil or by_loss
            d = r["distance"][:, 1 - suspect]
            inside = lab == suspect
            out[idx] = (d / (d + d.median().clamp_min(1e-12))) + inside.float()
            if flagged:
                out[idx[inside]] += 2.0
            self.report[str(r["class"])] = {
                "relative_size": r["relative_size"],
                "silhouette": r["silhouette"],
                "silhouette_z": z,
                "loss_gap": r["loss_gap"],
                "suspect_size": float(inside.float().mean()),
                "flagged": float(flagged),
                "rule": "loss"
                if by_loss
                else "size"
                if by_size
                else "silhouette"
                if by_sil
                else "",
            }
        return out

    @property
    def verdict(self) -> str | None:
        """One sentence on the last ``score``: the flagged classes and rules, or that none fired."""
        if not self.report:
            return None
        hit = {c: r["rule"] for c, r in self.report.items() if r["flagged"]}
        if not hit:
            return (
                f"activation-clustering: no cluster flagged by the {'/'.join(sorted(self.rules))} "
                "rule(s): nothing removed"
            )
        return "activation-clustering: flagged " + ", ".join(
            f"class {c} ({rule} rule)" for c, rule in hit.items()
        )

    def keep_mask(self, model: nn.Module, train: ImageData) -> torch.Tensor:
        """Bool ``(N,)``: keep every sample outside the flagged clusters."""
        return self.score(model, train) < 2.0

    def score_and_keep(
        self, model: nn.Module, train: ImageData
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores and keep-mask from one clustering pass."""
        scores = self.score(model, train)
        return scores, scores < 2.0
