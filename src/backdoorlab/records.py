"""Typed, frozen result records passed between the parts and written to disk.

Every record is a frozen dataclass with ``to_json()`` (a JSON-friendly dict carrying its ``kind``) and
``from_json()`` / ``load()`` that read it back, so the CLI, the demo, the report builder and the
benchmark store all read the same fields instead of guessing dictionary keys. Heavy objects (models,
tensors) ride along in fields marked ``json=False``: they are never serialised.

- ``AttackRun``: one attack run (config, metrics, timings, and in memory the model and poison indices).
- One record per defense family: ``ScanResult`` (model scan), ``InputDetectionResult`` (run-time
  input detection), ``SanitizeResult`` (data sanitising) and ``RepairResult`` (model repair); each
  carries the common ``DefenseRecord`` header (defense, family, options, config hash, cost, verdict).
- ``ScanReport``: several scanners on one model, with a calibrated combined score and verdict.

Example:
    >>> r = RepairResult(defense="nad", clean_acc_before=0.9, clean_acc_after=0.88,
    ...                  asr_before=0.99, asr_after=0.05)
    >>> RepairResult.from_json(r.to_json()) == r
    True
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from .errors import DataError

R = TypeVar("R", bound="Record")

NOT_JSON: dict[str, Any] = {"json": False}


def _plain(v: Any) -> Any:
    """A JSON-friendly copy: records -> dicts, tuples -> lists, tensors/numpy -> lists, NaN kept."""
    if isinstance(v, Record):
        return v.to_json()
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    if isinstance(v, Path):
        return str(v)
    if hasattr(v, "tolist") and callable(v.tolist):  # torch / numpy
        return v.tolist()
    if isinstance(v, bool | int | float | str) or v is None:
        return v
    return str(v)


def _convert(tp: Any, v: Any) -> Any:
    """Turn a JSON value back into the annotated type (nested records, tuples, optionals)."""
    if v is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if arg is type(None):
                continue
            try:
                return _convert(arg, v)
            except (TypeError, ValueError, DataError):
                continue
        return v
    if isinstance(tp, type) and issubclass(tp, Record):
        if not isinstance(v, Mapping):
            raise DataError(f"{tp.kind}: expected an object, got {type(v).__name__}")
        return tp.from_json(v)
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], x) for x in v)
        return tuple(v)
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        args = typing.get_args(tp)
        if len(args) == 2:
            return {k: _convert(args[1], x) for k, x in v.items()}
        return dict(v)
    if tp is float and isinstance(v, int | float):
        return float(v)
    return v


@dataclass(frozen=True, kw_only=True)
class Record:
    """Base of every record: ``to_json`` / ``from_json`` / ``save`` / ``load``."""

    kind: ClassVar[str] = "record"

    def to_json(self) -> dict[str, Any]:
        """JSON-friendly dict of every serialisable field, with ``kind`` first."""
        out: dict[str, Any] = {"kind": self.kind}
        for f in fields(self):
            if f.metadata.get("json", True):
                out[f.name] = _plain(getattr(self, f.name))
        return out

    @classmethod
    def from_json(cls: type[R], data: Mapping[str, Any]) -> R:
        """Rebuild a record from ``to_json()`` output; unknown keys are an error naming them."""
        if not isinstance(data, Mapping):
            raise DataError(f"{cls.kind}: expected a JSON object, got {type(data).__name__}")
        kind = data.get("kind", cls.kind)
        if kind != cls.kind:
            raise DataError(f"expected a {cls.kind!r} record, got kind {kind!r}")
        hints = typing.get_type_hints(cls)
        known = {f.name: f for f in fields(cls) if f.metadata.get("json", True)}
        unknown = sorted(set(data) - set(known) - {"kind"})
        if unknown:
            raise DataError(
                f"{cls.kind} record: unknown field(s) {', '.join(unknown)}; "
                f"expected: {', '.join(sorted(known))}"
            )
        kw = {k: _convert(hints.get(k, Any), v) for k, v in data.items() if k in known}
        try:
            return cls(**kw)
        except TypeError as e:
            raise DataError(f"{cls.kind} record: {e}") from None

    def replace(self: R, **changes: Any) -> R:
        """A copy with some fields changed (records are frozen)."""
        return dataclasses.replace(self, **changes)

    def save(self, path: str | Path) -> Path:
        """Write ``to_json()`` atomically to ``path``."""
        from .utils import atomic_write_json

        atomic_write_json(path, self.to_json())
        return Path(path)

    @classmethod
    def load(cls: type[R], path: str | Path) -> R:
        """Read a record written by ``save``."""
        p = Path(path)
        data = _read_json(p)
        try:
            return cls.from_json(data)
        except DataError as e:
            raise DataError(f"{p}: {e}") from None


# --------------------------------------------------------------------------- attacks


@dataclass(frozen=True, kw_only=True)
class EvalMetrics(Record):
    """Clean accuracy, attack success rate and robust accuracy of one model on one test set."""

    kind: ClassVar[str] = "eval"
    clean_acc: float
    asr: float | None = None
    ra: float | None = None
    per_class: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass(frozen=True, kw_only=True)
class AttackRun(Record):
    """One attack run: what was done (config), what it achieved (metrics) and what it cost.

    ``model``, ``clean_model`` and ``poison_indices`` are in memory only; a run folder keeps them as
    ``model.safetensors``, ``clean_model.safetensors`` and ``poison_indices.json``.
    """

    kind: ClassVar[str] = "attack-run"
    attack: str
    attack_kind: str = "poisoning"
    trigger: str = ""
    data: str = ""
    model: str = ""
    seed: int = 0
    clean_acc: float = float("nan")
    asr: float = float("nan")
    ra: float | None = None
    per_class: dict[str, float] = field(default_factory=dict)
    poisoned: int = 0
    poison_rate: float = 0.0
    stealth: dict[str, float] = field(default_factory=dict)
    attack_config: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    config_hash: str = ""
    train: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    clean_model_metrics: EvalMetrics | None = None
    learned_parts: tuple[str, ...] = ()
    version: str = ""
    path: str | None = None
    trained_model: Any = field(default=None, compare=False, repr=False, metadata=NOT_JSON)
    clean_model: Any = field(default=None, compare=False, repr=False, metadata=NOT_JSON)
    poison_indices: Any = field(default=None, compare=False, repr=False, metadata=NOT_JSON)
    prepared: Any = field(default=None, compare=False, repr=False, metadata=NOT_JSON)
    poisoned_set: Any = field(default=None, compare=False, repr=False, metadata=NOT_JSON)


# --------------------------------------------------------------------------- defenses


@dataclass(frozen=True, kw_only=True)
class DefenseRecord(Record):
    """The header every defense result carries: which defense, with which options, on what, at what cost.

    ``verdict`` is one plain sentence: what the defense concluded or did, including "its rule found
    nothing" when that is the case.
    """

    kind: ClassVar[str] = "defense"
    defense: str = ""
    family: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    config_hash: str = ""
    seed: int = 0
    run: str | None = None
    n_defender_clean: int = 0
    n_eval: int = 0
    seconds: float = 0.0
    peak_mem_mb: float = 0.0
    verdict: str = ""


@dataclass(frozen=True, kw_only=True)
class BeforeAfter(Record):
    """CA / ASR / RA before and after a defense changed the model, and the defense effectiveness rate."""

    kind: ClassVar[str] = "before-after"
    clean_acc_before: float | None = None
    clean_acc_after: float | None = None
    asr_before: float | None = None
    asr_after: float | None = None
    ra_before: float | None = None
    ra_after: float | None = None
    der: float | None = None


@dataclass(frozen=True, kw_only=True)
class ScanResult(DefenseRecord):
    """A model scanner's verdict on one model.

    ``score``: higher = more suspicious, on the method's own scale (``criterion`` says which statistic);
    ``flagged`` is ``score > threshold``. ``p_value``: the score's false-positive rate against clean
    reference models (``defenses.model_scan.calibration``), comparable across methods. ``per_class``:
    per-class figures (e.g. mask L1 norms) for the classes in ``classes``. ``evidence`` (in memory
    only) holds tensors such as reversed masks ``(K, 1, H, W)`` and patterns ``(K, C, H, W)``.
    """

    kind: ClassVar[str] = "scan"
    family: str = "model-scan"
    method: str = ""
    flagged: bool = False
    score: float = 0.0
    threshold: float = float("nan")
    criterion: str = ""
    score_meaning: str = ""
    suspect_targets: tuple[int, ...] = ()
    classes: tuple[int, ...] = ()
    per_class: dict[str, Any] = field(default_factory=dict)
    p_value: float | None = None
    true_target: int | None = None
    target_found: bool | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    evidence: dict[str, Any] = field(
        default_factory=dict, compare=False, repr=False, metadata=NOT_JSON
    )


@dataclass(frozen=True, kw_only=True)
class InputDetectionResult(DefenseRecord):
    """A run-time input detector scored on held-out clean inputs and their triggered versions.

    The threshold is fitted on the defender's clean part at ``frr_target``; ``frr`` (clean inputs
    flagged) and ``far`` (triggered inputs missed) are measured on the disjoint evaluation part.
    """

    kind: ClassVar[str] = "input-detection"
    family: str = "input-detection"
    threshold: float | None = None
    frr_target: float = 0.01
    frr: float | None = None
    far: float | None = None
    auroc: float | None = None
    tpr_at_1fpr: float | None = None
    precision: float | None = None
    recall: float | None = None
    n_clean: int = 0
    n_triggered: int = 0
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class BudgetRow(Record):
    """A sanitiser's removal at a fixed budget (a multiple of the true poison count).

    ``oracle`` is true for the row that uses the true count itself: a defender never knows it.
    """

    kind: ClassVar[str] = "budget"
    label: str
    factor: float
    oracle: bool = False
    n_removed: int = 0
    n_poison_removed: int = 0
    precision: float = 0.0
    recall: float = 0.0


@dataclass(frozen=True, kw_only=True)
class SanitizeResult(DefenseRecord, BeforeAfter):
    """A data sanitiser on a poisoned training set: its own rule's removal and the retrained model.

    ``budgets`` repeats the removal at mis-specified budgets (half and twice the true poison count) and,
    labelled ``oracle``, at the true count.
    """

    kind: ClassVar[str] = "sanitize"
    family: str = "data-sanitize"
    auroc: float | None = None
    tpr_at_1fpr: float | None = None
    n_train: int = 0
    n_poison: int = 0
    n_removed: int = 0
    n_poison_removed: int = 0
    removed_precision: float | None = None
    removed_recall: float | None = None
    budgets: tuple[BudgetRow, ...] = ()
    retrain_seconds: float = 0.0
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class RepairResult(DefenseRecord, BeforeAfter):
    """A model repair: CA / ASR / RA before and after, DER, and the repaired model (in memory)."""

    kind: ClassVar[str] = "repair"
    family: str = "model-repair"
    repaired_path: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    repaired_model: Any = field(default=None, compare=False, repr=False, metadata=NOT_JSON)


@dataclass(frozen=True, kw_only=True)
class ScanReport(Record):
    """Several scanners on one model: each result, a calibrated combined score and one verdict.

    ``p_value`` is the Bonferroni-corrected smallest per-method false-positive rate against clean
    reference models; ``score = 1 - p_value``; ``flagged`` is ``p_value <= alpha``, so the verdict
    always agrees with the score.
    """

    kind: ClassVar[str] = "scan-report"
    results: tuple[ScanResult, ...] = ()
    flagged: bool = False
    score: float = 0.0
    p_value: float | None = None
    alpha: float = 0.05
    combination: str = ""
    suspect_targets: tuple[int, ...] = ()
    verdict: str = ""
    model: dict[str, Any] = field(default_factory=dict)
    class_names: tuple[str, ...] = ()
    seconds: float = 0.0


DEFENSE_RECORDS: dict[str, type[DefenseRecord]] = {
    "model-scan": ScanResult,
    "input-detection": InputDetectionResult,
    "data-sanitize": SanitizeResult,
    "model-repair": RepairResult,
}

RECORDS: dict[str, type[Record]] = {
    r.kind: r
    for r in (
        EvalMetrics,
        AttackRun,
        ScanResult,
        InputDetectionResult,
        SanitizeResult,
        RepairResult,
        BudgetRow,
        ScanReport,
    )
}


def _read_json(p: Path) -> Any:
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise DataError(f"{p}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{p}: not valid JSON ({e})") from None


def load_record(path: str | Path) -> Record:
    """Read any record file, dispatching on its ``kind``."""
    p = Path(path)
    data = _read_json(p)
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind not in RECORDS:
        raise DataError(f"{p}: unknown record kind {kind!r}; expected one of {', '.join(RECORDS)}")
    try:
        return RECORDS[kind].from_json(data)
    except DataError as e:
        raise DataError(f"{p}: {e}") from None
