"""Small shared helpers: seeding, generators, atomic writes, progress bars."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import torch

T = TypeVar("T")


def make_generator(
    seed: int | torch.Generator | None, device: str | torch.device = "cpu"
) -> torch.Generator:
    """A ``torch.Generator`` seeded from an int (or passed through); ``None`` means seed 0."""
    if isinstance(seed, torch.Generator):
        return seed
    g = torch.Generator(device=device)
    g.manual_seed(0 if seed is None else int(seed))
    return g


def seed_all(seed: int) -> None:
    """Seed torch's global RNG (used by weight init and dropout) for a reproducible run."""
    torch.manual_seed(int(seed))


def progress(
    iterable: Iterable[T],
    *,
    desc: str = "",
    total: int | None = None,
    enabled: bool | None = None,
    leave: bool = False,
) -> Iterator[T]:
    """A tqdm progress bar that stays quiet when stderr is not a TTY (or ``enabled=False``)."""
    if enabled is None:
        enabled = sys.stderr.isatty() and os.environ.get("BACKDOORLAB_NO_PROGRESS") is None
    if not enabled:
        yield from iterable
        return
    from tqdm.auto import tqdm

    yield from tqdm(iterable, desc=desc, total=total, leave=leave, dynamic_ncols=True)


def current_umask() -> int:
    """The process umask (read without changing it for longer than a moment)."""
    mask = os.umask(0o22)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file and rename: never a half-written file.

    The file gets the mode a plain ``open`` would give it (0666 less the umask), not mkstemp's 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically, pretty-printed, with a trailing newline."""
    atomic_write_bytes(
        path, (json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n").encode()
    )


def _json_default(o: Any) -> Any:
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Build a folder in a hidden sibling and move it into place only if the block succeeds.

    An existing folder at ``path`` is replaced on success and left untouched on failure. The folder
    gets the mode ``mkdir`` would give it (0777 less the umask), not mkdtemp's 0700.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial"))
    os.chmod(tmp, 0o777 & ~current_umask())
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/"auto" picks CUDA when available, else CPU."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def model_device(model: torch.nn.Module, device: str | torch.device | None = None) -> torch.device:
    """The device to run on: the model's first parameter's (CPU if none), or ``device`` when given."""
    if device is not None and str(device) != "auto":
        return resolve_device(device)
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Put ``model`` in eval mode for the block and restore its previous mode afterwards."""
    was = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was)


def inference_module(model: torch.nn.Module, example: torch.Tensor) -> torch.nn.Module:
    """A frozen, inference-optimised TorchScript copy of ``model`` for many no-grad forward passes.

    ``torch.jit.trace`` (or the ScriptModule itself), then ``torch.jit.freeze`` and
    ``torch.jit.optimize_for_inference`` (conv/linear weights pre-packed for oneDNN, conv+ReLU fused):
    about 2x the eager throughput of the small CNNs on a CPU. The copy must give the same logits
    as ``model`` on ``example`` (to 1e-4 relative); any failure returns ``model`` itself (callers
    keep running it in eval mode). Later changes to ``model``'s weights do not reach the copy.
    """
    try:
        with torch.no_grad(), warnings.catch_warnings(), eval_mode(model):
            warnings.simplefilter("ignore")
            ref = model(example)
            scripted = (
                model
                if isinstance(model, torch.jit.ScriptModule)
                else torch.jit.trace(model, example, check_trace=False)
            )
            fast = torch.jit.optimize_for_inference(torch.jit.freeze(scripted.eval()))
            out = fast(example)
            if not (
                isinstance(out, torch.Tensor)
                and out.shape == ref.shape
                and torch.allclose(out, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()) + 1e-6)
            ):
                return model
        return fast
    except Exception:  # any model that cannot be frozen runs eagerly
        return model
