"""``backdoorlab scan MODEL --data SAMPLES``: is this model backdoored, and towards which class?"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..config import parse_kv
from ..errors import ConfigError


def cmd_scan(args: argparse.Namespace) -> int:
    """Scan a model file with clean samples; print the verdict, write JSON and an HTML report."""
    from ..pipeline import scan_file
    from ..utils import atomic_write_json

    if args.json and Path(args.json).is_dir():
        raise ConfigError(f"--json {args.json}: is a folder; give a file name")
    report = scan_file(
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
    for r in report.results:
        p = f" p={r.p_value:.3g}" if r.p_value is not None else ""
        print(
            f"{r.method}: {'FLAGGED' if r.flagged else 'clean'} score={r.score:.3f} "
            f"(threshold {r.threshold:g}){p} suspect_targets={list(r.suspect_targets)} "
            f"({r.seconds:.1f} s)"
        )
    if len(report.results) > 1 or report.p_value is not None:
        p = f", p={report.p_value:.3g}" if report.p_value is not None else ""
        print(f"combined: {report.verdict} (score {report.score:.3f}{p}; {report.combination})")
    doc = report.to_json()
    if args.json:
        atomic_write_json(args.json, doc)
        print(f"wrote {args.json}")
    if args.report:
        from ..report.scan import write_scan_report

        page = write_scan_report(report, args.report)
        print(f"wrote {page}")
    if not args.json and not args.report:
        print(json.dumps(doc, indent=2))
    return 0


def register(sub: Any) -> None:
    """Add ``scan``."""
    sp = sub.add_parser(
        "scan",
        help="scan a model for a backdoor with a few clean samples (Neural Cleanse, TABOR, ABS)",
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
        "--method", default="nc", help="scanner name (nc, tabor, abs), a comma list, or all [nc]"
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
