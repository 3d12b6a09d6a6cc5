"""The public Python API every command, the demo and the benchmark use: typed records in and out.

::

    from backdoorlab.experiment import RunConfig
    from backdoorlab.pipeline import run_attack, run_defense

    run = run_attack(RunConfig(attack="badnets", target=0, rate=0.1), out="runs/badnets")
    print(run.clean_acc, run.asr)                     # an AttackRun record
    nc = run_defense(run, "nc")                       # a ScanResult
    ac = run_defense(run, "activation-clustering")    # a SanitizeResult (retrains on the kept part)
    print(nc.verdict, ac.verdict, ac.asr_after)

- ``run_attack(config, out=None) -> AttackRun``: poison / train / modify as the attack's kind says,
  evaluate (CA, ASR, RA, stealth), and with ``out`` write the run folder (``runs``).
- ``run_defense(run, name, **options) -> record`` for any registered defense, dispatched on the
  registry entry's family: ``ScanResult``, ``InputDetectionResult``, ``SanitizeResult`` or
  ``RepairResult``. The defender gets a seeded class-balanced part of the clean test split; the
  disjoint rest only scores the defense afterwards. The defense itself is never handed the trigger,
  the poisoned test data or the poison indices.
- ``scan_model(model, samples, methods) -> ScanReport``: several scanners on one model, each score
  turned into a false-positive rate against clean reference models and combined (Bonferroni).
"""

from __future__ import annotations

import contextlib
import inspect
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .errors import ConfigError
from .records import (
    AttackRun,
    BudgetRow,
    DefenseRecord,
    EvalMetrics,
    InputDetectionResult,
    RepairResult,
    SanitizeResult,
    ScanReport,
    ScanResult,
)

if TYPE_CHECKING:
    import torch
    from torch import nn

    from .data.core import ImageData
    from .experiment import Prepared, RunConfig

BUDGET_FACTORS = (0.5, 1.0, 2.0)
# The defender's clean data, as a class-balanced fraction of the clean test split. Repairs fine-tune on
# it and need more: 0.3 of Fashion-MNIST's test split is 3,000 images, 5% of the training-set size
# (the NAD paper's setting); with 1,000 images Fine-Pruning and NAD overfit (docs/repairs.md).
CLEAN_FRACTION = {"model-repair": 0.3}
DEFAULT_CLEAN_FRACTION = 0.1
ALPHA = 0.05


# --------------------------------------------------------------------------- attacks


def run_attack(
    config: RunConfig | dict[str, Any],
    out: str | Path | None = None,
    *,
    prepared: Prepared | None = None,
) -> AttackRun:
    """Run one attack end to end and return its ``AttackRun``; with ``out`` write the run folder."""
    import torch

    from .experiment import RunConfig, prepare, train_model
    from .metrics.stealth import stealth_report
    from .runs import write_run
    from .train import History, evaluate

    cfg = config if isinstance(config, RunConfig) else RunConfig.from_dict(dict(config))
    t_start = time.perf_counter()
    p = prepared or prepare(cfg)
    t_load = time.perf_counter() - t_start
    attack: Any = p.attack
    kind = str(getattr(attack, "kind", "poisoning"))
    t0 = time.perf_counter()
    poisoned = attack.poison(p.splits.train, seed=cfg.seed)
    t_poison = time.perf_counter() - t0
    hist = History()
    t0 = time.perf_counter()
    if kind == "training":
        model = train_model(p, poisoned.data, hist, hooks=attack.hooks(poisoned.data, cfg.seed))
    elif kind == "model":
        model = attack.modify(train_model(p, poisoned.data, hist), p.splits.train, cfg.seed)
    elif kind == "poisoning":
        model = train_model(p, poisoned.data, hist)
    else:
        raise ConfigError(f"attack {cfg.attack!r}: unknown kind {kind!r}")
    t_train = time.perf_counter() - t0
    t0 = time.perf_counter()
    ev = evaluate(model, p.splits.test, attack, seed=cfg.seed + 1)
    t_eval = time.perf_counter() - t0
    clean_model = None
    clean_metrics = None
    if cfg.clean_baseline:
        t0 = time.perf_counter()
        clean_model = train_model(p, p.splits.train)
        cev = evaluate(clean_model, p.splits.test, attack, seed=cfg.seed + 1)
        clean_metrics = EvalMetrics(
            clean_acc=float(cev["clean_acc"]),
            asr=float(cev["asr"]),
            ra=_opt(cev.get("ra")),
            per_class=dict(cev["per_class"]),
            seconds=time.perf_counter() - t0,
        )
    learned = attack.learned_parts() if hasattr(attack, "learned_parts") else {}
    n_train = len(p.splits.train)
    run = AttackRun(
        attack=cfg.attack,
        attack_kind=kind,
        trigger=p.trigger.name,
        data=cfg.data,
        model=p.arch,
        seed=cfg.seed,
        clean_acc=float(ev["clean_acc"]),
        asr=float(ev["asr"]),
        ra=_opt(ev.get("ra")),
        per_class=dict(ev["per_class"]),
        poisoned=len(poisoned.indices),
        poison_rate=len(poisoned.indices) / max(1, n_train),
        stealth=stealth_report(
            p.trigger, p.splits.test.x[:256], generator=torch.Generator().manual_seed(cfg.seed)
        ),
        attack_config=attack.describe(),
        config=cfg.to_dict(),
        config_hash=cfg.config_hash(),
        train={**cfg.train.to_dict(), "seed": cfg.seed, "loss": hist.loss, "acc": hist.acc},
        timings={
            "load_s": t_load,
            "poison_s": t_poison,
            "train_s": t_train,
            "eval_s": t_eval,
            "total_s": time.perf_counter() - t_start,
            "train_images_per_s": n_train * cfg.train.epochs / max(t_train, 1e-9),
        },
        clean_model_metrics=clean_metrics,
        learned_parts=tuple(sorted(learned)),
        version=__version__,
        trained_model=model,
        clean_model=clean_model,
        poison_indices=poisoned.indices,
        prepared=p,
        poisoned_set=poisoned,
    )
    if out is not None:
        write_run(out, run, p, learned)
        run = run.replace(path=str(out))
    return run


def _opt(v: Any) -> float | None:
    return None if v is None else float(v)


def load_run(path: str | Path) -> AttackRun:
    """Read a run folder back as an ``AttackRun`` with its model and rebuilt poisoned set."""
    from .runs import load_run as _load

    return _load(path)


# --------------------------------------------------------------------------- defenses


def defense_family(name: str) -> str:
    """The point of action (``model-scan``, ``input-detection``, ``data-sanitize``, ``model-repair``)."""
    from .defenses import DEFENSES

    fam = DEFENSES.entry(name).family
    if fam not in EVALUATORS:
        raise ConfigError(f"defense {name!r}: unknown family {fam!r}")
    return fam


def build_defense(name: str, options: dict[str, Any] | None = None, seed: int = 0) -> Any:
    """A registered defense with options; ``seed`` is passed when it takes one and none was given."""
    from .defenses import DEFENSES

    factory: Any = DEFENSES.get(name)
    opts = dict(options or {})
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}  # type: ignore[assignment]
    if "seed" in params and "seed" not in opts:
        opts["seed"] = seed
    return DEFENSES.create(name, **opts)


def defense_options(defense: Any) -> dict[str, Any]:
    """The defense's complete options (its ``config()``), JSON-friendly."""
    import json
    from dataclasses import asdict, is_dataclass

    if hasattr(defense, "config") and callable(defense.config):
        try:
            return dict(defense.config())
        except (TypeError, ValueError):
            pass
    if is_dataclass(defense) and not isinstance(defense, type):
        try:
            out: dict[str, Any] = json.loads(json.dumps(asdict(defense), default=str))
            return out
        except (TypeError, ValueError):
            pass
    return {}


def _hash(name: str, options: dict[str, Any]) -> str:
    import hashlib
    import json

    text = json.dumps({"name": name, "options": options}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class _Context:
    """What one defense evaluation works on (internal)."""

    def __init__(
        self,
        run: AttackRun,
        clean: ImageData,
        evaluation: ImageData,
        frr: float,
        eval_seed: int,
        write: bool,
        save_repaired: bool,
        budgets: Sequence[float],
    ) -> None:
        self.run, self.clean, self.evaluation = run, clean, evaluation
        self.frr, self.eval_seed = frr, eval_seed
        self.write, self.save_repaired, self.budgets = write, save_repaired, budgets
        self.p = run.prepared
        self.attack = run.prepared.attack
        self.model = run.trained_model

    def metrics(self, model: nn.Module) -> dict[str, float | None]:
        from .train import evaluate

        ev = evaluate(model, self.evaluation, self.attack, seed=self.eval_seed)
        return {"clean_acc": ev["clean_acc"], "asr": ev["asr"], "ra": ev.get("ra")}


def der(ca_before: float, ca_after: float, asr_before: float, asr_after: float) -> float:
    """Defense effectiveness rate: ``[max(0, ASR drop) - max(0, CA drop) + 1] / 2`` in [0, 1]."""
    from .metrics import detection

    fn = getattr(detection, "der", None)
    if fn is not None:
        return float(fn(ca_before, ca_after, asr_before, asr_after))
    return (max(0.0, asr_before - asr_after) - max(0.0, ca_before - ca_after) + 1) / 2


def _before_after(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    return {
        "clean_acc_before": before["clean_acc"],
        "clean_acc_after": after["clean_acc"],
        "asr_before": before["asr"],
        "asr_after": after["asr"],
        "ra_before": before["ra"],
        "ra_after": after["ra"],
        "der": der(before["clean_acc"], after["clean_acc"], before["asr"], after["asr"]),
    }


def _eval_scan(defense: Any, ctx: _Context, header: dict[str, Any]) -> DefenseRecord:
    from .metrics.detection import measure

    with measure() as cost:
        res: ScanResult = defense.scan(ctx.model, ctx.clean)
    extra: dict[str, Any] = {}
    if ctx.attack.mode != "all-to-all":
        extra = {
            "true_target": int(ctx.attack.target),
            "target_found": int(ctx.attack.target) in res.suspect_targets,
        }
    rule = res.criterion or "its"
    verdict = res.verdict or (
        f"flagged: suspect target(s) {', '.join(map(str, res.suspect_targets)) or '?'} "
        f"(score {res.score:.3g} > threshold {res.threshold:.3g}, {rule} rule)"
        if res.flagged
        else f"not flagged: the {rule} rule found nothing "
        f"(score {res.score:.3g} <= threshold {res.threshold:.3g})"
    )
    return res.replace(
        **{**header, "seconds": cost.seconds, "peak_mem_mb": cost.peak_mem_mb},
        verdict=verdict,
        **extra,
    )


def _eval_input(defense: Any, ctx: _Context, header: dict[str, Any]) -> DefenseRecord:
    import torch

    from .metrics.detection import detection_report, measure

    trig = ctx.attack.triggered_test(ctx.evaluation, seed=ctx.eval_seed)
    with measure() as cost:
        defense.fit(ctx.model, ctx.clean, frr=ctx.frr)
        neg = torch.as_tensor(defense.score(ctx.evaluation.x)).flatten()
        pos = torch.as_tensor(defense.score(trig.x)).flatten()
    scores = torch.cat([neg, pos])
    labels = torch.cat([torch.zeros(len(neg)), torch.ones(len(pos))])
    rep = detection_report(scores, labels, defense.threshold)
    thr = defense.threshold
    frr = float((neg > thr).float().mean()) if thr is not None else None
    far = float((pos <= thr).float().mean()) if thr is not None else None
    extras = {"tpr_at_5fpr": rep.get("tpr_at_5fpr")}
    for k in ("heldout_frr", "calibration_frr"):
        if hasattr(defense, k):
            extras[k] = float(getattr(defense, k))
    verdict = (
        f"flags {1 - far:.1%} of triggered inputs at {frr:.1%} of held-out clean inputs "
        f"(threshold fitted at FRR {ctx.frr:.0%} on the defender's clean part)"
        if far is not None and frr is not None
        else "no threshold was set"
    )
    return InputDetectionResult(
        **header,
        seconds=cost.seconds,
        peak_mem_mb=cost.peak_mem_mb,
        verdict=verdict,
        threshold=None if thr is None else float(thr),
        frr_target=ctx.frr,
        frr=frr,
        far=far,
        auroc=rep["auroc"],
        tpr_at_1fpr=rep["tpr_at_1fpr"],
        precision=rep.get("precision"),
        recall=rep.get("recall"),
        n_clean=len(neg),
        n_triggered=len(pos),
        extras=extras,
    )


def budget_rows(
    scores: torch.Tensor, truth: torch.Tensor, factors: Sequence[float]
) -> tuple[BudgetRow, ...]:
    """Removal of the top ``factor x (true poison count)`` scores; the 1x row is labelled oracle."""
    import torch

    n_poison = int(truth.sum())
    rows = []
    order = torch.argsort(scores, descending=True, stable=True)
    for f in factors:
        k = min(len(scores), math.ceil(f * n_poison))
        removed = torch.zeros(len(scores), dtype=torch.bool)
        removed[order[:k]] = True
        hit = int((removed & truth).sum())
        oracle = abs(f - 1.0) < 1e-9
        label = f"{f:g}x true poison count" + (" (oracle)" if oracle else " (mis-specified)")
        rows.append(
            BudgetRow(
                label=label,
                factor=float(f),
                oracle=oracle,
                n_removed=k,
                n_poison_removed=hit,
                precision=hit / k if k else 0.0,
                recall=hit / n_poison if n_poison else 0.0,
            )
        )
    return tuple(rows)


def _eval_sanitize(defense: Any, ctx: _Context, header: dict[str, Any]) -> DefenseRecord:
    import torch

    from .experiment import train_model
    from .metrics.detection import detection_report, measure

    poisoned = ctx.run.poisoned_set
    if poisoned is None:
        poisoned = ctx.attack.poison(ctx.p.splits.train, seed=ctx.p.cfg.seed)
    train = poisoned.data
    with measure() as cost:
        s, k = defense.score_and_keep(ctx.model, train)
        scores = torch.as_tensor(s).flatten().double()
        keep = torch.as_tensor(k).flatten().bool()
    truth = poisoned.is_poisoned
    rep = detection_report(scores, truth) if truth.any() else {"auroc": None, "tpr_at_1fpr": None}
    removed = ~keep
    n_removed = int(removed.sum())
    hit = int((removed & truth).sum())
    with measure() as retrain_cost:
        retrained = train_model(ctx.p, train.subset(keep))
    ba = _before_after(ctx.metrics(ctx.model), ctx.metrics(retrained))
    own = getattr(defense, "verdict", None)
    if n_removed == 0:
        verdict = own or "its rule found nothing: no sample removed, the model is unchanged"
    else:
        verdict = (f"{own}; " if own else f"removed {n_removed} samples; ") + (
            f"scored afterwards: {hit} of {int(truth.sum())} poisons removed, retrained CA "
            f"{ba['clean_acc_after']:.3f}, ASR {ba['asr_before']:.3f} -> {ba['asr_after']:.3f}"
        )
    return SanitizeResult(
        **header,
        seconds=cost.seconds,
        peak_mem_mb=cost.peak_mem_mb,
        verdict=verdict,
        auroc=rep["auroc"],
        tpr_at_1fpr=rep["tpr_at_1fpr"],
        n_train=len(train),
        n_poison=int(truth.sum()),
        n_removed=n_removed,
        n_poison_removed=hit,
        removed_precision=hit / n_removed if n_removed else None,
        removed_recall=hit / int(truth.sum()) if truth.any() else None,
        budgets=budget_rows(scores, truth, ctx.budgets) if truth.any() else (),
        retrain_seconds=retrain_cost.seconds,
        **ba,
    )


def _eval_repair(defense: Any, ctx: _Context, header: dict[str, Any]) -> DefenseRecord:
    from .metrics.detection import measure

    with measure() as cost:
        repaired = defense.repair(ctx.model, ctx.clean)
    ba = _before_after(ctx.metrics(ctx.model), ctx.metrics(repaired))
    info = getattr(defense, "info", None)
    extras = {k: v for k, v in info.items() if k != "options"} if isinstance(info, dict) else {}
    path = None
    if ctx.write and ctx.save_repaired and ctx.run.path and getattr(repaired, "arch_config", None):
        from .models import save_model

        dest = Path(ctx.run.path) / "defenses" / f"{header['defense']}.safetensors"
        save_model(repaired, dest, classes=ctx.p.splits.train.classes)
        path = str(dest)
    own = getattr(defense, "verdict", None)
    survived = ba["asr_after"] > 0.5 * ba["asr_before"]
    verdict = (f"{own}; " if own else "") + (
        f"scored afterwards: ASR {ba['asr_before']:.3f} -> {ba['asr_after']:.3f}, "
        f"CA {ba['clean_acc_before']:.3f} -> {ba['clean_acc_after']:.3f} (DER {ba['der']:.3f})"
        + ("; the backdoor survived" if survived else "")
    )
    return RepairResult(
        **header,
        seconds=cost.seconds,
        peak_mem_mb=cost.peak_mem_mb,
        verdict=verdict,
        repaired_path=path,
        extras=extras,
        repaired_model=repaired,
        **ba,
    )


EVALUATORS: dict[str, Callable[[Any, _Context, dict[str, Any]], DefenseRecord]] = {
    "model-scan": _eval_scan,
    "input-detection": _eval_input,
    "data-sanitize": _eval_sanitize,
    "model-repair": _eval_repair,
}


def run_defense(
    run: AttackRun | str | Path,
    name: str,
    *,
    clean_fraction: float | None = None,
    frr: float = 0.01,
    seed: int = 0,
    family: str | None = None,
    write: bool = True,
    save_repaired: bool = True,
    eval_limit: int | None = None,
    budgets: Sequence[float] = BUDGET_FACTORS,
    **options: Any,
) -> DefenseRecord:
    """Run defense ``name`` (with ``options``) on an attack run and return its family's record.

    ``run`` is an ``AttackRun`` (from ``run_attack`` or ``load_run``) or a run folder. ``family``
    (e.g. ``"data-sanitize"``) rejects defenses of another family. With ``write`` and a run folder the
    record goes to ``DIR/defenses/NAME.json`` (and a repaired model to ``NAME.safetensors``).
    ``eval_limit`` scores on a seeded class-balanced sample of that many evaluation images.
    ``clean_fraction`` defaults to ``CLEAN_FRACTION`` of the family (repairs 0.3, others 0.1).
    """
    from .defenses import DEFENSES
    from .runs import load_run as _load
    from .runs import read_results

    canonical = DEFENSES.canonical(name)
    fam = defense_family(canonical)
    if family is not None and fam != family:
        raise ConfigError(f"defense {name!r} is a {fam} defense, not {family}")
    if not isinstance(run, AttackRun):
        read_results(run)  # fail fast on a bad folder, before any work
    defense = build_defense(canonical, options, seed)
    r = run if isinstance(run, AttackRun) else _load(run)
    if r.trained_model is None or r.prepared is None:
        raise ConfigError("run_defense: the AttackRun has no model; use run_attack or load_run")
    if clean_fraction is None:
        clean_fraction = CLEAN_FRACTION.get(fam, DEFAULT_CLEAN_FRACTION)
    clean, evaluation = r.prepared.splits.test.split_balanced(clean_fraction, seed)
    if eval_limit is not None and eval_limit < len(evaluation):
        evaluation = evaluation.per_class(max(1, eval_limit // evaluation.num_classes), seed=seed)
    opts = defense_options(defense)
    header = {
        "defense": canonical,
        "family": fam,
        "options": opts,
        "config_hash": _hash(canonical, opts),
        "seed": seed,
        "run": r.path,
        "n_defender_clean": len(clean),
        "n_eval": len(evaluation),
    }
    ctx = _Context(
        r, clean, evaluation, frr, r.prepared.cfg.seed + 1, write, save_repaired, budgets
    )
    record = EVALUATORS[fam](defense, ctx, header)
    if write and r.path:
        record.save(Path(r.path) / "defenses" / f"{canonical}.json")
    return record


# --------------------------------------------------------------------------- scanning


def model_scanners() -> list[str]:
    """Names of every registered model scanner (family ``model-scan``)."""
    from .defenses import DEFENSES

    return [e.name for e in DEFENSES.entries() if e.family == "model-scan"]


def resolve_methods(methods: str | Sequence[str]) -> list[str]:
    """``"all"`` -> every scanner; ``"a,b"`` or a list -> those; unknown names give a ``ConfigError``."""
    from .defenses import DEFENSES

    known = model_scanners()
    if methods == "all" or methods == ["all"]:
        return known
    names = (
        [m.strip() for m in methods.split(",") if m.strip()]
        if isinstance(methods, str)
        else list(methods)
    )
    if not names:
        raise ConfigError("--method: expected a scanner name or 'all'")
    out = []
    for n in names:
        if n not in DEFENSES or DEFENSES.canonical(n) not in known:
            from .registry import suggest

            close = suggest(n, known)
            hint = f" (did you mean {' or '.join(close)}?)" if close else ""
            raise ConfigError(
                f"--method {n!r}: not a model scanner{hint}; known: {', '.join(known)} or all"
            )
        out.append(DEFENSES.canonical(n))
    return out


def create_scanner(
    name: str, seed: int = 0, device: str = "auto", options: dict[str, Any] | None = None
) -> Any:
    """Build a registered scanner, passing ``seed`` / ``device`` and the ``options`` it accepts."""
    from .defenses import DEFENSES

    factory: Any = DEFENSES.get(name)
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}  # type: ignore[assignment]
    kw: dict[str, Any] = {k: v for k, v in (options or {}).items() if k in params}
    if "seed" in params:
        kw["seed"] = seed
    if "device" in params:
        kw["device"] = device
    return DEFENSES.create(name, **kw)


def calibrated_p_value(method: str, score: float) -> float | None:
    """The score's false-positive rate against clean reference models, or ``None`` without references."""
    from .defenses.model_scan import calibration

    try:
        return float(calibration.p_value(method, score))
    except (KeyError, ConfigError):
        return None


def combine_results(
    results: Sequence[ScanResult], alpha: float = ALPHA
) -> tuple[bool, float, float | None, str]:
    """Combined verdict: Bonferroni over the calibrated per-method rates (flagged iff p <= alpha).

    Methods without clean references fall back to their own verdicts (flagged if any flags).
    """
    from .defenses.model_scan.calibration import combine

    ps = [r.p_value for r in results if r.p_value is not None]
    if ps:
        p = combine(ps)
        how = (
            f"smallest per-method false-positive rate against clean reference models x {len(ps)} "
            f"methods (Bonferroni); flagged if <= {alpha:g}"
        )
        return p <= alpha, 1.0 - p, p, how
    flagged = any(r.flagged for r in results)
    return flagged, float(flagged), None, "no clean references: flagged if any method flags"


def scan_model(
    model: nn.Module,
    samples: ImageData,
    methods: str | Sequence[str] = "nc",
    *,
    seed: int = 0,
    device: str = "auto",
    options: dict[str, Any] | None = None,
    model_info: dict[str, Any] | None = None,
    alpha: float = ALPHA,
) -> ScanReport:
    """Scan ``model`` with a few clean ``samples`` using one or several scanners; one ``ScanReport``."""
    from .utils import resolve_device

    names = resolve_methods(methods)
    if options:
        accepted: set[str] = set()
        for n in names:
            with contextlib.suppress(TypeError, ValueError):
                accepted |= set(inspect.signature(_factory(n)).parameters)
        bad = sorted(set(options) - accepted)
        if bad:
            raise ConfigError(
                f"--opt {', '.join(bad)}: not an option of {', '.join(names)}; "
                f"accepted: {', '.join(sorted(accepted - {'self'})) or '(none)'}"
            )
    model.to(resolve_device(device))
    results: list[ScanResult] = []
    t_all = time.perf_counter()
    for n in names:
        det = create_scanner(n, seed, device, options)
        t0 = time.perf_counter()
        r: ScanResult = det.scan(model, samples)
        opts = defense_options(det)
        r = r.replace(
            defense=n,
            method=n,
            options=opts,
            config_hash=_hash(n, opts),
            seed=seed,
            n_defender_clean=len(samples),
            seconds=r.seconds or time.perf_counter() - t0,
            p_value=calibrated_p_value(n, r.score),
        )
        rule = r.criterion or "its"
        r = r.replace(
            verdict=f"flagged by the {rule} rule"
            if r.flagged
            else f"not flagged: the {rule} rule found nothing"
        )
        results.append(r)
    flagged, score, p, how = combine_results(results, alpha)
    suspects: list[int] = []
    best = sorted(results, key=lambda r: r.p_value if r.p_value is not None else 1.0)
    for r in best:
        if r.flagged or (p is not None and flagged):
            suspects += [t for t in r.suspect_targets if t not in suspects]
    if flagged:
        verdict = "BACKDOOR SUSPECTED" + (
            f" (target {', '.join(map(str, suspects))})" if suspects else ""
        )
    else:
        verdict = "no backdoor found"
    return ScanReport(
        results=tuple(results),
        flagged=flagged,
        score=score,
        p_value=p,
        alpha=alpha,
        combination=how,
        suspect_targets=tuple(suspects),
        verdict=verdict,
        model=dict(model_info or {}),
        class_names=tuple(samples.classes),
        seconds=time.perf_counter() - t_all,
    )


def _factory(name: str) -> Any:
    from .defenses import DEFENSES

    return DEFENSES.get(name)


def scan_file(
    model_path: str | Path,
    data: str,
    methods: str | Sequence[str] = "nc",
    *,
    arch: str | None = None,
    input_shape: str | tuple[int, int, int] | None = None,
    classes: int | None = None,
    trust_pickle: bool = False,
    seed: int = 0,
    device: str = "auto",
    per_class: int = 20,
    options: dict[str, Any] | None = None,
) -> ScanReport:
    """Load a model file and clean samples safely, check them, and ``scan_model``."""
    from .data.samples import load_samples, prepare_samples
    from .models.loading import load_any_model, parse_shape

    resolve_methods(methods)  # fail fast on a bad name, before loading anything
    shape = (
        parse_shape(input_shape)
        if isinstance(input_shape, str) or input_shape is None
        else input_shape
    )
    if classes is not None and classes < 2:
        raise ConfigError(f"--classes must be >= 2, got {classes}")
    model, meta = load_any_model(model_path, arch, shape, classes, trust_pickle)
    x, y = load_samples(data, meta.get("input_shape"), per_class, seed)
    clean = prepare_samples(model, x, y, meta, data)
    meta["n_samples"] = len(clean)
    info = {
        k: (list(v) if isinstance(v, tuple) else v)
        for k, v in meta.items()
        if k in ("path", "format", "arch", "input_shape", "num_classes", "labels", "n_samples")
    }
    return scan_model(
        model, clean, methods, seed=seed, device=device, options=options, model_info=info
    )
