"""``backdoorlab scan MODEL --data SAMPLES``: is this model backdoored, and towards which class?

Loads a model a defender was handed (TorchScript, safetensors / weights-only checkpoint with an
architecture name or JSON card, ONNX via the optional ``onnx2torch``; a pickled full model only with
``--trust-pickle``), a few clean samples (``.npz``, a class-per-folder image tree, or a built-in data
set), runs one or all registered model scanners (``ModelDetector`` entries of ``DEFENSES``: ``nc``,
``tabor``, and any colleague's), and writes a JSON verdict and an HTML report with the reversed
triggers and anomaly-index chart. Bad input gives a one-line ``ConfigError`` / ``ModelError`` /
``DataError``; the report folder is written atomically (never half-written).
"""

from __future__ import annotations

import argparse
import contextlib
import html
import importlib
import inspect
import json
import pkgutil
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw, ImageFont
from torch import nn

from .data.core import ImageData
from .defenses.base import DEFENSES, ModelDetector, ScanResult
from .errors import ConfigError, DataError, ModelError
from .utils import atomic_dir, atomic_write_json, resolve_device

ONNX_HINT = (
    "export the model to TorchScript instead, e.g. "
    "torch.jit.trace(model.eval(), example).save('model.pt'), and scan that"
)


# --------------------------------------------------------------------------- methods


def _import_defenses() -> None:
    """Import every module of ``backdoorlab.defenses`` so that all scanners are registered."""
    from . import defenses

    for mod in pkgutil.iter_modules(defenses.__path__):
        try:
            importlib.import_module(f"{defenses.__name__}.{mod.name}")
        except Exception as e:  # a colleague's module that does not import is simply not offered
            warnings.warn(f"defense module {mod.name} not loaded: {e}", stacklevel=2)


def model_detectors() -> list[str]:
    """Names of every registered ``ModelDetector``."""
    _import_defenses()
    out = []
    for e in DEFENSES.entries():
        f = e.factory
        if (isinstance(f, type) and issubclass(f, ModelDetector)) or "model-detector" in e.tags:
            out.append(e.name)
    return out


def resolve_methods(method: str) -> list[str]:
    """``"all"`` -> every model scanner; ``"a,b"`` -> those; unknown names give a ``ConfigError``."""
    known = model_detectors()
    if method == "all":
        if not known:
            raise ConfigError("no model scanners are registered")
        return known
    names = [m.strip() for m in method.split(",") if m.strip()]
    if not names:
        raise ConfigError("--method: expected a scanner name or 'all'")
    for n in names:
        if n not in known:
            raise ConfigError(
                f"--method {n!r}: not a model scanner; known: {', '.join(known)} or all"
            )
    return names


def create_detector(
    name: str, seed: int, device: str, options: dict[str, Any] | None = None
) -> ModelDetector:
    """Build a registered scanner, passing ``seed`` / ``device`` / ``options`` it accepts."""
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
    det: ModelDetector = DEFENSES.create(name, **kw)
    return det


# --------------------------------------------------------------------------- model loading


def parse_shape(text: str | None) -> tuple[int, int, int] | None:
    """``"C,H,W"`` -> ``(C, H, W)``; a bad value gives a ``ConfigError``."""
    if text is None:
        return None
    try:
        parts = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise ConfigError(f"--input-shape {text!r}: expected C,H,W like 1,28,28") from None
    if len(parts) != 3 or min(parts) < 1:
        raise ConfigError(f"--input-shape {text!r}: expected three positive integers C,H,W")
    return (parts[0], parts[1], parts[2])


def _is_onnx(p: Path) -> bool:
    return p.suffix.lower() == ".onnx"


def _load_onnx(p: Path) -> nn.Module:
    try:
        import onnx2torch
    except ImportError:
        raise ModelError(
            f"{p}: ONNX model cannot be scanned: scanning needs gradients through the model and "
            f"the optional package onnx2torch is not installed; {ONNX_HINT}"
        ) from None
    try:
        model: nn.Module = onnx2torch.convert(str(p))
    except Exception as e:
        msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise ModelError(
            f"{p}: onnx2torch cannot convert this ONNX model ({msg}); {ONNX_HINT}"
        ) from None
    return model.eval()


def _load_pickle(p: Path) -> nn.Module:
    """A full pickled model; only called with ``--trust-pickle`` (this runs the file's code)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ModelError(f"{p}: cannot load as a pickled model ({type(e).__name__}: {e})") from None
    if isinstance(obj, nn.Module):
        return obj.eval()
    raise ModelError(
        f"{p}: --trust-pickle loaded a {type(obj).__name__}, not a torch.nn.Module; "
        "for a state dict give --arch instead"
    )


def load_scan_model(
    path: str | Path,
    arch: str | None = None,
    input_shape: tuple[int, int, int] | None = None,
    num_classes: int | None = None,
    trust_pickle: bool = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """Load a model to scan and what is known about it (``input_shape``, ``num_classes``, ``format``)."""
    from .models.io import is_torchscript, load_model, load_torchscript, read_state_dict

    p = Path(path)
    if p.suffix == ".json" and p.with_suffix(".safetensors").exists():
        p = p.with_suffix(".safetensors")  # the JSON card names the weights beside it
    if not p.exists():
        raise ModelError(f"{p}: model file not found")
    if p.is_dir():
        raise ModelError(f"{p}: is a folder; give the model file (.pt TorchScript, .safetensors)")
    meta: dict[str, Any] = {"path": str(p)}
    model: nn.Module
    if is_torchscript(p):
        model, card = load_torchscript(p)
        meta["format"] = "torchscript"
        shape = card.get("input_shape")
        meta["input_shape"] = input_shape or (tuple(int(s) for s in shape) if shape else None)
        meta["num_classes"] = num_classes or card.get("num_classes")
        meta["classes"] = card.get("classes")
        return model, meta
    if _is_onnx(p):
        meta.update(format="onnx", input_shape=input_shape, num_classes=num_classes)
        return _load_onnx(p), meta
    if p.suffix != ".safetensors":
        try:
            read_state_dict(p)  # weights-only: never runs code from the file
        except ModelError:
            if not trust_pickle:
                raise ModelError(
                    f"{p}: refused: not TorchScript, safetensors or a weights-only checkpoint; "
                    "a pickled model runs arbitrary code when loaded; export it to TorchScript, "
                    "or pass --trust-pickle only if you trust its author"
                ) from None
            model = _load_pickle(p)
            meta.update(format="pickle", input_shape=input_shape, num_classes=num_classes)
            return model, meta
    model = load_model(p, arch, num_classes=num_classes, input_shape=input_shape)
    cfg = getattr(model, "arch_config", {}) or {}
    meta.update(
        format="weights",
        arch=cfg.get("arch"),
        input_shape=tuple(cfg["input_shape"]) if cfg.get("input_shape") else input_shape,
        num_classes=cfg.get("num_classes") or num_classes,
        classes=getattr(model, "classes", None),
    )
    return model, meta


# --------------------------------------------------------------------------- samples


def _read_folder(root: Path, shape: tuple[int, int, int] | None) -> ImageData:
    from .data.folder import IMAGE_EXTENSIONS, stack_images

    dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not dirs:
        raise DataError(f"{root}: no class subfolders (expected {root}/<class>/*.png)")
    numeric = all(d.name.isdigit() for d in dirs)
    files: list[Path] = []
    labels: list[int] = []
    for i, d in enumerate(dirs):
        imgs = sorted(f for f in d.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS)
        files += imgs
        labels += [int(d.name) if numeric else i] * len(imgs)
    if not files:
        raise DataError(f"{root}: no images in the class folders")
    size = shape[1] if shape and shape[1] == shape[2] else None
    x = stack_images(files, size=size, channels=shape[0] if shape else None)
    y = torch.tensor(labels, dtype=torch.long)
    return ImageData(x, y, name=root.name)


def load_samples(
    spec: str,
    input_shape: tuple[int, int, int] | None = None,
    per_class: int = 20,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Clean samples ``x`` float ``(N, C, H, W)`` in [0, 1] and labels (``None`` when not given)."""
    p = Path(spec)
    if p.suffix.lower() == ".npz" or p.is_file():
        if not p.exists():
            raise DataError(f"{p}: samples file not found")
        if p.suffix.lower() != ".npz":
            raise DataError(f"{p}: expected a .npz file, an image folder or a data set name")
        from .data.npz import read_npz

        c = read_npz(p)
        return c.x, c.y
    if p.is_dir():
        d = _read_folder(p, input_shape)
        return d.x, d.y
    from .data.registry import DATASETS, load_dataset

    if spec in DATASETS:
        test = load_dataset(spec).test
        sel = test.per_class(per_class, seed=seed)
        return sel.x, sel.y
    raise DataError(
        f"{spec}: not found: expected a .npz file, a class-per-folder image tree or a data set "
        f"name ({', '.join(DATASETS.names())})"
    )


def prepare_samples(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None,
    meta: dict[str, Any],
    source: str,
) -> ImageData:
    """Check samples against the model; fill missing labels with the model's predictions."""
    from .defenses.reverse import check_classifier
    from .train.evaluate import predict

    if len(x) == 0:
        raise DataError(f"{source}: no images")
    shape = meta.get("input_shape")
    if shape is not None and tuple(x.shape[1:]) != tuple(shape):
        raise DataError(
            f"{source}: images of shape {tuple(x.shape[1:])} but the model expects {tuple(shape)} (C, H, W)"
        )
    k = check_classifier(model, x, meta.get("num_classes"))
    meta["num_classes"] = k
    meta["input_shape"] = tuple(int(s) for s in x.shape[1:])
    if y is None:
        y = predict(model, x)
        meta["labels"] = "predicted"
    else:
        meta["labels"] = "given"
        if y.numel() and int(y.max()) >= k:
            raise DataError(f"{source}: label {int(y.max())} but the model has only {k} classes")
    names = meta.get("classes")
    classes = list(names) if names and len(names) == k else [str(i) for i in range(k)]
    return ImageData(x, y.long(), classes=classes, name=Path(source).stem)


# --------------------------------------------------------------------------- results


def combine(results: dict[str, ScanResult]) -> dict[str, Any]:
    """Combined verdict: flagged if any method flags; score = the largest method score."""
    suspects: list[int] = []
    for r in results.values():
        suspects += [t for t in r.suspect_targets if t not in suspects]
    return {
        "flagged": any(r.flagged for r in results.values()),
        "score": max(float(r.score) for r in results.values()),
        "suspect_targets": suspects,
        "method": "all",
        "combination": "flagged if any method flags; score is the largest method score",
        "per_class": {},
        "seconds": sum(r.seconds for r in results.values()),
        "methods": {n: r.to_json() for n, r in results.items()},
    }


def result_json(results: dict[str, ScanResult], meta: dict[str, Any]) -> dict[str, Any]:
    """The JSON document of a scan: one method's result, or the combined verdict of several."""
    out = combine(results) if len(results) > 1 else next(iter(results.values())).to_json()
    out["model"] = {
        k: (list(v) if isinstance(v, tuple) else v)
        for k, v in meta.items()
        if k in ("path", "format", "arch", "input_shape", "num_classes", "labels", "n_samples")
    }
    return out


# --------------------------------------------------------------------------- report


def bar_chart(
    values: Sequence[float],
    threshold: float,
    labels: Sequence[str],
    title: str,
    highlight: Sequence[int] = (),
) -> Image.Image:
    """A Pillow bar chart of per-class anomaly indices with the threshold line."""
    font = ImageFont.load_default()
    n = len(values)
    bw, gap, left, top, bottom = 34, 10, 50, 30, 40
    W = left + n * (bw + gap) + gap + 10
    H = 300
    vals = [v if v == v and abs(v) != float("inf") else (10.0 if v > 0 else -10.0) for v in values]
    hi = max([threshold * 1.2, *vals, 0.5])
    lo = min([*vals, 0.0])
    span = hi - lo
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    plot_h = H - top - bottom

    def ypos(v: float) -> float:
        return top + (hi - v) / span * plot_h

    d.text((left, 8), title, fill="black", font=font)
    d.line([(left, ypos(0)), (W - 10, ypos(0))], fill="black")
    d.line([(left, top), (left, H - bottom)], fill="black")
    for tv in (lo, 0.0, threshold, hi):
        d.text((4, ypos(tv) - 6), f"{tv:.1f}", fill="black", font=font)
    for i, v in enumerate(vals):
        x0 = left + gap + i * (bw + gap)
        colour = (200, 40, 40) if i in highlight else (70, 110, 180)
        y0, y1 = sorted((ypos(v), ypos(0)))
        d.rectangle([x0, y0, x0 + bw, max(y1, y0 + 1)], fill=colour)
        d.text((x0 + 2, H - bottom + 6), labels[i][:6], fill="black", font=font)
    ty = ypos(threshold)
    for x in range(left, W - 10, 8):
        d.line([(x, ty), (x + 4, ty)], fill=(220, 0, 0), width=2)
    d.text((W - 110, ty - 14), f"threshold {threshold:g}", fill=(220, 0, 0), font=font)
    return img


def _trigger_grid(res: ScanResult, classes: list[str]) -> Image.Image | None:
    from .report.images import grid_image

    masks = res.evidence.get("masks")
    patterns = res.evidence.get("patterns")
    if masks is None or patterns is None:
        return None
    masks, patterns = masks.detach().cpu().float(), patterns.detach().cpu().float()
    c = patterns.shape[1]
    m_img = masks.expand(-1, c, -1, -1)
    idx = res.info.get("classes") or list(range(len(masks)))
    return grid_image(
        [m_img, patterns, masks * patterns],
        ["mask", "pattern", "mask*pattern"],
        scale=max(2, 84 // masks.shape[-1]),
        col_labels=[classes[i] if i < len(classes) else str(i) for i in idx],
    )


def write_report(
    out_dir: str | Path,
    results: dict[str, ScanResult],
    meta: dict[str, Any],
    doc: dict[str, Any],
    classes: list[str],
) -> Path:
    """Write ``out_dir/index.html`` with PNG figures beside it, atomically (all or nothing)."""
    from .report.images import save_png

    parts: list[str] = []
    verdict = "BACKDOOR SUSPECTED" if doc["flagged"] else "no backdoor found"
    colour = "#b00" if doc["flagged"] else "#070"
    targets = ", ".join(str(t) for t in doc["suspect_targets"]) or "none"
    with atomic_dir(out_dir) as tmp:
        for name, r in results.items():
            thr = float(r.info.get("threshold", 2.0))
            ai_thr = float(r.info.get("anomaly_threshold", thr))
            what = {
                "ratio": "second-smallest / smallest mask norm",
                "mad": "anomaly index of the smallest trigger",
            }.get(str(r.info.get("criterion", "")), "higher = more suspicious")
            idx = r.per_class.get("anomaly_index")
            if not (isinstance(idx, list) and all(isinstance(v, int | float) for v in idx)):
                idx = None
            sec = [
                f"<h2>{html.escape(name)}: {'flagged' if r.flagged else 'not flagged'}</h2>",
                f"<p>score ({html.escape(what)}) = {r.score:.3f}, threshold "
                f"{thr:g}; suspect targets: {html.escape(', '.join(map(str, r.suspect_targets)) or 'none')}; "
                f"{r.seconds:.1f} s</p>",
            ]
            grid = _trigger_grid(r, classes)
            if grid is not None:
                save_png(grid, tmp / f"{name}_triggers.png")
                sec.append(
                    f'<figure><img src="{html.escape(name)}_triggers.png" alt="reversed triggers">'
                    "<figcaption>Reversed trigger per class: mask, pattern, mask*pattern"
                    "</figcaption></figure>"
                )
            if idx:
                labels = [
                    classes[c] if c < len(classes) else str(c)
                    for c in (r.info.get("classes") or range(len(idx)))
                ]
                hl = [
                    i
                    for i, c in enumerate(r.info.get("classes") or range(len(idx)))
                    if c in r.suspect_targets
                ]
                chart = bar_chart(idx, ai_thr, labels, f"{name}: anomaly index per class", hl)
                save_png(chart, tmp / f"{name}_anomaly.png")
                sec.append(
                    f'<figure><img src="{html.escape(name)}_anomaly.png" alt="anomaly index">'
                    "<figcaption>MAD anomaly index (positive = smaller trigger than the median); "
                    "red: suspect targets</figcaption></figure>"
                )
            rows = []
            keys = [k for k, v in r.per_class.items() if isinstance(v, list)]
            if keys:
                n = len(r.per_class[keys[0]])
                head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
                for i in range(n):
                    cells = "".join(
                        f"<td>{html.escape(str(r.per_class[k][i]))}</td>"
                        for k in keys
                        if i < len(r.per_class[k])
                    )
                    rows.append(f"<tr><td>{i}</td>{cells}</tr>")
                sec.append(f"<table><tr><th>class</th>{head}</tr>{''.join(rows)}</table>")
            parts.append("\n".join(sec))
        model_info = html.escape(json.dumps(doc.get("model", {})))
        page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>backdoorlab scan</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}} img{{image-rendering:pixelated;max-width:100%}}
table{{border-collapse:collapse;font-size:12px}} td,th{{border:1px solid #ccc;padding:2px 6px}}
.verdict{{font-size:1.6em;color:{colour};font-weight:bold}}</style></head><body>
<h1>backdoorlab scan</h1>
<p class="verdict">{verdict}</p>
<p>method: {html.escape(str(doc["method"]))}; score {doc["score"]:.3f}; suspect target class(es): {html.escape(targets)};
{doc["seconds"]:.1f} s</p>
<p><small>model: {model_info}</small></p>
{"".join(f"<section>{s}</section>" for s in parts)}
</body></html>
"""
        (tmp / "index.html").write_text(page)
        atomic_write_json(tmp / "scan.json", doc)
    return Path(out_dir) / "index.html"


# --------------------------------------------------------------------------- command


def run_scan(
    model_path: str,
    data: str,
    method: str = "nc",
    *,
    arch: str | None = None,
    input_shape: str | tuple[int, int, int] | None = None,
    classes: int | None = None,
    trust_pickle: bool = False,
    seed: int = 0,
    device: str = "auto",
    per_class: int = 20,
    options: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, ScanResult], list[str]]:
    """Load, check and scan; returns the JSON document, the raw results and class names."""
    names = resolve_methods(method)
    if options:
        accepted: set[str] = set()
        for n in names:
            with contextlib.suppress(TypeError, ValueError):
                accepted |= set(inspect.signature(DEFENSES.get(n)).parameters)
        bad = sorted(set(options) - accepted)
        if bad:
            raise ConfigError(
                f"--opt {', '.join(bad)}: not an option of {', '.join(names)}; "
                f"accepted: {', '.join(sorted(accepted - {'self'})) or '(none)'}"
            )
    shape = (
        parse_shape(input_shape)
        if isinstance(input_shape, str) or input_shape is None
        else input_shape
    )
    if classes is not None and classes < 2:
        raise ConfigError(f"--classes must be >= 2, got {classes}")
    model, meta = load_scan_model(model_path, arch, shape, classes, trust_pickle)
    dev = resolve_device(device)
    model.to(dev)
    x, y = load_samples(data, meta.get("input_shape"), per_class, seed)
    clean = prepare_samples(model, x, y, meta, data)
    meta["n_samples"] = len(clean)
    results: dict[str, ScanResult] = {}
    for n in names:
        det = create_detector(n, seed, device, options)
        t0 = time.perf_counter()
        r = det.scan(model, clean)
        if not r.seconds:
            r.seconds = time.perf_counter() - t0
        results[n] = r
    return result_json(results, meta), results, clean.classes


def cmd_scan(args: argparse.Namespace) -> int:
    """The ``scan`` subcommand."""
    from .config import parse_kv

    if args.json and Path(args.json).is_dir():
        raise ConfigError(f"--json {args.json}: is a folder; give a file name")
    doc, results, classes = run_scan(
        args.model,
        args.data,
        args.method,
        arch=args.arch,
        input_shape=args.input_shape,
        classes=args.classes,
        trust_pickle=args.trust_pickle,
        seed=args.seed,
        device=args.device,
        per_class=args.per_class,
        options=parse_kv(args.opt, "--opt"),
    )
    for n, r in results.items():
        print(
            f"{n}: {'FLAGGED' if r.flagged else 'clean'} score={r.score:.3f} "
            f"suspect_targets={r.suspect_targets} ({r.seconds:.1f} s)"
        )
    if len(results) > 1:
        print(f"combined: {'FLAGGED' if doc['flagged'] else 'clean'} (flagged if any method flags)")
    if args.json:
        atomic_write_json(args.json, doc)
        print(f"wrote {args.json}")
    if args.report:
        page = write_report(args.report, results, {}, doc, classes)
        print(f"wrote {page}")
    if not args.json and not args.report:
        print(json.dumps(doc, indent=2))
    return 0


def register_cli(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``scan`` subcommand to an argparse subparsers object."""
    sp: argparse.ArgumentParser = subparsers.add_parser(
        "scan",
        help="scan a model for a backdoor with a few clean samples (Neural Cleanse, TABOR, ...)",
    )
    sp.add_argument(
        "model",
        help="model file: TorchScript (.pt), .safetensors (+ JSON card or --arch), "
        "weights-only checkpoint, or ONNX (needs onnx2torch)",
    )
    sp.add_argument(
        "--data",
        required=True,
        help="clean samples: a .npz (x, optional y), a class-per-folder image tree, or a data set name",
    )
    sp.add_argument(
        "--method", default="nc", help="scanner name (nc, tabor, ...), a comma list, or all [nc]"
    )
    sp.add_argument("--json", help="write the verdict as JSON to this file")
    sp.add_argument("--report", help="write an HTML report (index.html + PNGs) to this folder")
    sp.add_argument("--arch", help="architecture for a weights file without a JSON card")
    sp.add_argument("--input-shape", help="model input shape C,H,W when the file does not say")
    sp.add_argument("--classes", type=int, help="number of classes when the file does not say")
    sp.add_argument(
        "--per-class", type=int, default=20, help="images per class from a data set name [20]"
    )
    sp.add_argument(
        "--trust-pickle",
        action="store_true",
        help="allow a pickled full model (runs code from the file: only for files you trust)",
    )
    sp.add_argument(
        "--opt",
        action="append",
        metavar="K=V",
        help="scanner option, e.g. max_epochs=30 or threshold=2.5 (repeatable)",
    )
    sp.add_argument("--seed", type=int, default=0, help="seed of the trigger search [0]")
    sp.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto [auto]")
    sp.set_defaults(func=cmd_scan)
    return sp
