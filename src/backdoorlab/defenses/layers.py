"""Split a classifier at an inner layer into ``head`` (input -> activation) and ``tail``
(activation -> logits), for plain ``nn.Module`` models and for TorchScript models alike.

Defenses that stimulate or inspect inner neurons (ABS, fine-pruning, activation clustering...) need
``logits = tail(head(x))`` with an editable activation in between. Three mechanisms, tried in order
and every one verified numerically (``tail(head(x))`` must reproduce ``model(x)`` on probe inputs)
before it is used:

* ``features`` method (``nn.Module``): zoo models compute ``forward`` as ``g(self.features(x))``; the
  head is ``model.features`` and the tail calls ``model.forward`` with ``features`` shadowed by an
  instance attribute that returns the given activation.
* forward hooks (``nn.Module``): for a named submodule ``"body.3"`` (its output) or ``"fc2:input"``
  (its input); the head stops the forward pass at the hook, the tail replaces the output (input)
  there and runs the model on a zero image (anything before the layer is then ignored; a skip path
  around the layer makes the verification fail).
* graph surgery (``torch.jit.ScriptModule``): TorchScript modules refuse ``register_forward_hook``
  (``RuntimeError: register_forward_hook is not supported on ScriptModules``, torch 2.x), so we copy
  the ``forward`` graph twice with the ``torch._C`` Graph API. The head graph returns the chosen
  ``Value``; in the tail graph the Value's uses are redirected to a new graph input, every node that
  no longer reaches the output is deleted (``prim::CallMethod`` nodes included, which the stock dead
  code pass keeps), and the image input must then be unused -- otherwise the Value is not a cut of
  the graph (e.g. a residual path bypasses it). Both graphs become functions with
  ``torch._C._create_function_from_graph`` and are called with the module object as ``self``; they
  are differentiable like the original.

``layer`` is ``"auto"`` (default), a submodule name (``"conv2"``, ``"body"``; ``"name:input"`` for
its input, ``nn.Module`` only), or ``"features"``. ``"auto"`` means the last convolutional feature
map: for ``nn.Module`` the ``features`` method if present, else the output of the last-finishing
module with a 4-D output that is a cut, else the input of the last ``nn.Linear``; for TorchScript the
last 4-D Value of the top-level graph (in topological order) that is a cut. Whatever cannot be split
raises a one-line :class:`~backdoorlab.errors.ModelError`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import ModelError

_CHECK_ATOL = 1e-4


@dataclass
class LayerSplit:
    """A model cut at an inner layer: ``model(x) == tail(head(x))``; ``shape`` is one sample's activation."""

    head: Callable[[torch.Tensor], torch.Tensor]
    tail: Callable[[torch.Tensor], torch.Tensor]
    layer: str
    shape: tuple[int, ...]
    how: str
    max_error: float = 0.0


class _Stop(Exception):
    """Raised by a head hook to end the forward pass once the activation is captured."""


def _model_kind(model: Any) -> str:
    if isinstance(model, torch.jit.ScriptModule):
        return "torchscript"
    if isinstance(model, nn.Module):
        return "module"
    raise ModelError(
        f"cannot split a {type(model).__name__}: expected an nn.Module or ScriptModule"
    )


def _verify(
    split: LayerSplit, model: Any, probe: torch.Tensor
) -> tuple[bool, float, tuple[int, ...]]:
    """Whether ``tail(head(x))`` reproduces ``model(x)`` on ``probe``; max error; activation shape."""
    with torch.no_grad():
        try:
            ref = model(probe)
            h = split.head(probe)
            out = split.tail(h)
        except _Stop:
            return False, float("inf"), ()
        except Exception:  # a candidate that breaks the forward pass is just not a valid split
            return False, float("inf"), ()
    if not isinstance(h, torch.Tensor) or not isinstance(out, torch.Tensor):
        return False, float("inf"), ()
    if out.shape != ref.shape:
        return False, float("inf"), ()
    err = float((out.float() - ref.float()).abs().max()) if ref.numel() else 0.0
    scale = float(ref.float().abs().max()) if ref.numel() else 1.0
    return err <= _CHECK_ATOL * max(1.0, scale), err, tuple(h.shape[1:])


# --- nn.Module: features method and forward hooks -------------------------------------------


def _features_split(model: nn.Module, input_shape: tuple[int, ...]) -> LayerSplit:
    feats: Callable[[torch.Tensor], torch.Tensor] = getattr(model, "features")  # noqa: B009

    def head(x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = feats(x)
        return out

    def tail(h: torch.Tensor) -> torch.Tensor:
        model.__dict__["features"] = lambda _x: h  # shadows the method for this call only
        try:
            out: torch.Tensor = model(h.new_zeros(h.shape[0], *input_shape))
        finally:
            del model.__dict__["features"]
        return out

    return LayerSplit(head, tail, "features", (), "features-method")


def _hook_split(
    model: nn.Module, name: str, use_input: bool, input_shape: tuple[int, ...]
) -> LayerSplit:
    mods = dict(model.named_modules())
    if name not in mods or name == "":
        raise ModelError(
            f"layer {name!r} not found in {type(model).__name__}; submodules: {', '.join(n for n in mods if n)[:300]}"
        )
    mod = mods[name]

    def head(x: torch.Tensor) -> torch.Tensor:
        box: list[torch.Tensor] = []

        def grab(_m: nn.Module, args: tuple[Any, ...], out: Any = None) -> None:
            box.append(args[0] if use_input else out)
            raise _Stop

        handle = (
            mod.register_forward_pre_hook(grab) if use_input else mod.register_forward_hook(grab)
        )
        try:
            model(x)
        except _Stop:
            pass
        finally:
            handle.remove()
        if not box or not isinstance(box[0], torch.Tensor):
            raise ModelError(f"layer {name!r} of {type(model).__name__} did not produce a tensor")
        return box[0]

    def tail(h: torch.Tensor) -> torch.Tensor:
        def put_in(_m: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
            return (h, *args[1:])

        def put_out(_m: nn.Module, args: tuple[Any, ...], out: Any) -> torch.Tensor:
            return h

        handle = (
            mod.register_forward_pre_hook(put_in)
            if use_input
            else mod.register_forward_hook(put_out)
        )
        try:
            out: torch.Tensor = model(h.new_zeros(h.shape[0], *input_shape))
        finally:
            handle.remove()
        return out

    label = f"{name}:input" if use_input else name
    return LayerSplit(head, tail, label, (), "forward-hook")


def _module_candidates(model: nn.Module, probe: torch.Tensor) -> list[tuple[str, bool]]:
    """Auto candidates for a plain module: 4-D outputs, last-finishing first; then last Linear input."""
    finished: list[tuple[str, bool]] = []
    handles = []
    for n, m in model.named_modules():
        if n == "":
            continue

        def rec(_m: nn.Module, _a: Any, out: Any, n: str = n) -> None:
            finished.append((n, isinstance(out, torch.Tensor) and out.dim() == 4))

        handles.append(m.register_forward_hook(rec))
    try:
        with torch.no_grad():
            model(probe)
    finally:
        for h in handles:
            h.remove()
    seen: set[str] = set()
    out: list[tuple[str, bool]] = []
    for n, four_d in reversed(finished):
        if four_d and n not in seen:
            seen.add(n)
            out.append((n, False))
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    order = [n for n, _ in finished]
    linears = sorted((n for n in linears if n in order), key=lambda n: order.index(n))
    if linears:
        out.append((linears[-1], True))
    return out


# --- TorchScript: graph surgery --------------------------------------------------------------


def _prune_unused(graph: Any, keep_inputs: bool = True) -> None:
    """Delete every node whose outputs are all unused (reverse topological order, CallMethods too)."""
    changed = True
    while changed:
        changed = False
        for node in reversed(list(graph.nodes())):
            if node.kind() == "prim::Constant" or node.outputsSize() == 0:
                continue
            if all(not o.uses() for o in node.outputs()):
                node.destroy()
                changed = True
    torch._C._jit_pass_dce(graph)


def _forward_graph(ts: torch.jit.ScriptModule) -> Any:
    """The TorchScript graph of ``ts.forward``."""
    return getattr(ts, "forward").graph  # noqa: B009


def _ts_values(graph: Any) -> list[Any]:
    """Tensor-typed outputs of top-level nodes, in topological order."""
    vals = []
    for node in graph.nodes():
        for o in node.outputs():
            if isinstance(o.type(), torch._C.TensorType):
                vals.append(o)
    return vals


def _ts_split_at(
    ts: torch.jit.ScriptModule, index: int, label: str
) -> tuple[LayerSplit | None, str]:
    """Split at the ``index``-th tensor Value of the top-level graph; (split, why-not)."""
    base = _forward_graph(ts)
    n_in = len(list(base.inputs()))
    if n_in != 2:
        return None, f"forward takes {n_in - 1} inputs, expected 1 image batch"
    gh = base.copy()
    v = _ts_values(gh)[index]
    while len(list(gh.outputs())):
        gh.eraseOutput(0)
    gh.registerOutput(v)
    _prune_unused(gh)
    gt = base.copy()
    vt = _ts_values(gt)[index]
    new_in = gt.addInput("abs_override")
    new_in.setType(vt.type())
    vt.replaceAllUsesWith(new_in)
    _prune_unused(gt)
    x_in = list(gt.inputs())[1]
    if x_in.uses():
        return None, "the image input reaches the output around this layer (not a cut)"
    gt.eraseInput(1)
    try:
        fh = torch._C._create_function_from_graph(f"abs_head_{index}", gh)
        ft = torch._C._create_function_from_graph(f"abs_tail_{index}", gt)
    except RuntimeError as e:
        return None, f"graph rewrite failed ({str(e).strip().splitlines()[0][:120]})"
    module_c = ts._c

    def head(x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = fh(module_c, x)
        return out

    def tail(h: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = ft(module_c, h)
        return out

    return LayerSplit(head, tail, label, (), "torchscript-graph"), ""


def _ts_shapes(ts: torch.jit.ScriptModule, probe: torch.Tensor) -> list[tuple[int, ...]] | None:
    """Shapes of all top-level tensor Values on ``probe`` (one run), or ``None`` if that fails."""
    g = _forward_graph(ts).copy()
    vals = _ts_values(g)
    while len(list(g.outputs())):
        g.eraseOutput(0)
    for v in vals:
        g.registerOutput(v)
    try:
        f = torch._C._create_function_from_graph("abs_probe", g)
        with torch.no_grad():
            outs = f(ts._c, probe)
    except Exception:
        return None
    outs = outs if isinstance(outs, tuple) else (outs,)
    if len(outs) != len(vals):
        return None
    return [tuple(o.shape) if isinstance(o, torch.Tensor) else () for o in outs]


def _ts_value_label(v: Any) -> str:
    node = v.node()
    if node.kind() == "prim::CallMethod":
        owner = node.inputsAt(0).node()
        if owner.kind() == "prim::GetAttr":
            return str(owner.s("name"))
    return f"{node.kind()}#{v.debugName()}"


def _split_torchscript(ts: torch.jit.ScriptModule, layer: str, probe: torch.Tensor) -> LayerSplit:
    try:
        graph = _forward_graph(ts)
    except (AttributeError, RuntimeError):
        raise ModelError(
            f"{type(ts).__name__}: TorchScript module without a forward graph"
        ) from None
    vals = _ts_values(graph)
    labels = [_ts_value_label(v) for v in vals]
    if layer not in ("auto", "features"):
        name, _, what = layer.partition(":")
        if what == "input":
            pos = {v.debugName(): i for i, v in enumerate(vals)}
            idx = [
                pos[n.inputsAt(1).debugName()]
                for n in graph.nodes()
                if n.kind() == "prim::CallMethod"
                and n.inputsSize() > 1
                and _ts_value_label(n.output()) == name
                and n.inputsAt(1).debugName() in pos
            ]
        else:
            idx = [i for i, lab in enumerate(labels) if lab == name]
        if not idx:
            named = sorted({lab for lab in labels if "#" not in lab})
            raise ModelError(
                f"TorchScript layer {layer!r} not found among top-level submodule calls "
                f"(NAME or NAME:input; nested names are not supported): {', '.join(named) or 'none'}"
            )
        order = idx[::-1]
    else:
        shapes = _ts_shapes(ts, probe)
        order = [i for i in range(len(vals))[::-1] if shapes is None or len(shapes[i]) == 4]
    reasons: list[str] = []
    for i in order:
        split, why = _ts_split_at(ts, i, layer if layer not in ("auto", "features") else labels[i])
        if split is None:
            reasons.append(f"{labels[i]}: {why}")
            continue
        ok, err, shape = _verify(split, ts, probe)
        if layer in ("auto", "features") and len(shape) != 3:
            continue  # auto wants a conv feature map (C, H, W)
        if ok:
            split.shape, split.max_error = shape, err
            return split
        reasons.append(f"{labels[i]}: tail(head(x)) differs from model(x) by {err:.3g}")
    detail = "; ".join(reasons[-2:]) if reasons else "no 4-D activation in the top-level graph"
    raise ModelError(f"cannot split TorchScript {ts.original_name} at layer {layer!r}: {detail}")


def split_model(
    model: nn.Module, input_shape: tuple[int, ...], layer: str = "auto", seed: int = 0
) -> LayerSplit:
    """Cut ``model`` at ``layer`` (see module docstring), verified on two seeded random probe images.

    Example:
        >>> from backdoorlab.models import create_model
        >>> m = create_model("badnets_cnn", seed=0).eval()
        >>> s = split_model(m, (1, 28, 28))
        >>> s.how, s.shape
        ('features-method', (32, 4, 4))
    """
    kind = _model_kind(model)
    g = torch.Generator().manual_seed(seed)
    try:
        dev = next(iter(model.parameters())).device
    except (StopIteration, RuntimeError):
        dev = torch.device("cpu")
    probe = torch.rand(2, *input_shape, generator=g).to(dev)
    if kind == "torchscript":
        return _split_torchscript(model, layer, probe)  # type: ignore[arg-type]
    candidates: list[tuple[str, bool]]
    if layer == "features":
        candidates = [("features", False)]
    elif layer == "auto":
        candidates = [("features", False)] if callable(getattr(model, "features", None)) else []
        try:
            candidates += _module_candidates(model, probe)
        except Exception as e:
            raise ModelError(
                f"cannot run {type(model).__name__} on inputs of shape {tuple(input_shape)} ({str(e).strip().splitlines()[0][:150]})"
            ) from None
    else:
        name, _, what = layer.partition(":")
        if what not in ("", "input", "output"):
            raise ModelError(f"bad layer {layer!r}: expected NAME, NAME:input or NAME:output")
        candidates = [(name, what == "input")]
    reasons: list[str] = []
    for name, use_input in candidates:
        if name == "features":
            if not callable(getattr(model, "features", None)):
                raise ModelError(f"{type(model).__name__} has no features() method")
            split = _features_split(model, tuple(input_shape))
        else:
            split = _hook_split(model, name, use_input, tuple(input_shape))
        ok, err, shape = _verify(split, model, probe)
        if ok:
            split.shape, split.max_error = shape, err
            return split
        reasons.append(f"{split.layer}: tail(head(x)) differs from model(x) by {err:.3g}")
    raise ModelError(
        f"cannot split {type(model).__name__} at layer {layer!r}: "
        + ("; ".join(reasons[:2]) if reasons else "no candidate layer")
    )
