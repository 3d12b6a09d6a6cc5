"""The ``Trigger`` interface: a batched, non-mutating image transform ``x -> x'``.

Two kinds, following the survey "Deep Learning Backdoors" (Li, Ma, Xue, Zhao), Sec. on trigger forms:

* *replace* triggers carry a mask ``m`` ``(1|C, H, W)`` and a pattern ``p`` ``(C, H, W)`` and compute
  ``x' = (1 - m) * x + m * p`` (patches, stickers, textured shapes, logos);
* *perturb* triggers compute a function of the whole image (blend, additive noise, sinusoid,
  image-wide filters, steganography, warps).

All work on float batches ``(N, C, H, W)`` in [0, 1]; randomness (e.g. a random position per image)
comes only from the ``generator`` argument.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from ..config import Configurable
from ..errors import ConfigError
from ..registry import Registry

TRIGGERS: Registry[Any] = Registry("triggers")


def check_images(x: torch.Tensor, who: str = "trigger") -> None:
    """Raise a clear error unless ``x`` is a float batch ``(N, C, H, W)``."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
        got = f"{tuple(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ConfigError(f"{who}: expected a float batch (N, C, H, W) in [0, 1], got {got}")


class Trigger(Configurable):
    """Base class: subclasses implement :meth:`apply`; ``name`` is the registry name.

    Options are the ``init`` fields of the dataclass subclasses: ``config()`` rebuilds the trigger
    with ``TRIGGERS.create(name, **config)`` and ``config_hash()`` identifies it (see
    :class:`backdoorlab.config.Configurable`).
    """

    kind: ClassVar[str] = "perturb"
    name: ClassVar[str] = "trigger"

    def apply(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Return a triggered copy of the batch ``x`` ``(N, C, H, W)``; never mutates ``x``."""
        raise NotImplementedError

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        check_images(x, self.name)
        return self.apply(x, generator)

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({opts})"


class ReplaceTrigger(Trigger):
    """A trigger that replaces the pixels under a mask with a pattern: ``(1 - m) * x + m * p``."""

    kind: ClassVar[str] = "replace"

    def mask_pattern(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask ``(1|N, 1|C, H, W)`` in [0, 1] and pattern ``(1|N, C, H, W)`` for the batch ``x``."""
        raise NotImplementedError

    def place_object(
        self,
        mask: torch.Tensor,
        content: torch.Tensor,
        x: torch.Tensor,
        generator: torch.Generator | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Place an object (``mask`` ``(h, w)``, ``content`` ``(C, h, w)``) at ``self.position`` for
        the batch ``x``; returns full-size ``(mask, pattern)`` as ``mask_pattern`` does."""
        n, _, h, w = x.shape
        obj = torch.cat([mask.reshape(1, *mask.shape[-2:]), content])
        position, margin = getattr(self, "position", "bottom-right"), getattr(self, "margin", 1)
        placed = place(obj, (h, w), n, position, margin, generator).to(x.device)
        return placed[:, :1], placed[:, 1:]

    def apply(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        m, p = self.mask_pattern(x, generator)
        m, p = m.to(x.dtype), p.to(x.dtype)
        if m.shape[0] == 1 and p.shape[0] == 1:
            # One mask for the whole batch: copy once and blend only inside the mask's bounding box,
            # so a small patch costs about as much as a plain copy of the data.
            nz = torch.nonzero(m[0].amax(0) > 0)
            if len(nz) == 0:
                return x.clone()
            (r0, c0), (r1, c1) = nz.amin(0).tolist(), (nz.amax(0) + 1).tolist()
            out = x.clone()
            box = (..., slice(r0, r1), slice(c0, c1))
            region = out[box]
            out[box] = torch.lerp(region, p[box].expand_as(region), m[box].expand_as(region))
            return out
        return torch.lerp(x, p.expand_as(x), m.expand_as(x))


def parse_color(color: Any, channels: int) -> torch.Tensor:
    """A colour given as a float, a name, "#rrggbb" or a tuple -> tensor ``(C,)`` in [0, 1]."""
    names = {
        "white": (1.0, 1.0, 1.0),
        "black": (0.0, 0.0, 0.0),
        "red": (1.0, 0.0, 0.0),
        "green": (0.0, 1.0, 0.0),
        "blue": (0.0, 0.0, 1.0),
        "yellow": (1.0, 1.0, 0.0),
        "cyan": (0.0, 1.0, 1.0),
        "magenta": (1.0, 0.0, 1.0),
        "gray": (0.5, 0.5, 0.5),
        "grey": (0.5, 0.5, 0.5),
        "orange": (1.0, 0.55, 0.0),
        "purple": (0.5, 0.0, 0.5),
    }
    rgb: tuple[float, ...]
    if isinstance(color, str):
        c = color.strip().lower()
        if c in names:
            rgb = names[c]
        elif c.startswith("#") and len(c) == 7:
            try:
                rgb = tuple(int(c[i : i + 2], 16) / 255 for i in (1, 3, 5))
            except ValueError:
                raise ConfigError(f"bad colour {color!r}: expected #rrggbb") from None
        else:
            try:
                rgb = tuple(float(v) for v in c.split(","))
            except ValueError:
                raise ConfigError(
                    f"bad colour {color!r}: expected a name ({', '.join(names)}), #rrggbb, or numbers in [0, 1]"
                ) from None
    elif isinstance(color, (int, float)):
        rgb = (float(color),)
    elif isinstance(color, torch.Tensor):
        rgb = tuple(float(v) for v in color.flatten())
    else:
        rgb = tuple(float(v) for v in color)
    if any(v < 0 or v > 1 for v in rgb):
        raise ConfigError(f"bad colour {color!r}: values must lie in [0, 1]")
    t = torch.tensor(rgb, dtype=torch.float32)
    if t.numel() == channels:
        return t
    if t.numel() == 1:
        return t.repeat(channels)
    if t.numel() == 3 and channels == 1:  # luminance (ITU-R BT.601)
        return (t * torch.tensor([0.299, 0.587, 0.114])).sum().reshape(1)
    raise ConfigError(f"colour {color!r} has {t.numel()} values for {channels}-channel images")


def parse_position(position: Any) -> str | tuple[int, int]:
    """Normalise a position option: a corner name, "center", "random", or ``(x, y)``.

    Strings from the command line such as ``"4,5"`` become ``(4, 5)``; names are lower-cased with
    ``_`` read as ``-``.
    """
    if isinstance(position, str):
        p = position.strip().lower().replace("_", "-")
        if "," in p:
            parts = p.split(",")
            try:
                xx, yy = (int(float(v)) for v in parts)
            except ValueError:
                raise ConfigError(
                    f"bad position {position!r}: expected x,y (two integers)"
                ) from None
            return xx, yy
        names = {"random", "center"} | {
            f"{r}-{c}" for r in ("top", "bottom", "center") for c in ("left", "right", "center")
        }
        if p not in names:
            raise ConfigError(
                f"bad position {position!r}: expected top-left, top-right, bottom-left, bottom-right, center, random or x,y"
            )
        return p
    try:
        xx, yy = (int(v) for v in position)
    except (TypeError, ValueError):
        raise ConfigError(
            f"bad position {position!r}: expected a corner name, 'random' or (x, y)"
        ) from None
    return xx, yy


def resolve_position(
    position: Any, size: tuple[int, int], image: tuple[int, int], margin: int = 1
) -> tuple[int, int] | None:
    """Top-left ``(row, col)`` of a ``size`` object in an ``image``; ``None`` for "random".

    ``position`` is a corner name ("bottom-right", "top-left", ...), "center", "random", or ``(x, y)``
    (column, row of the top-left corner; also the string ``"x,y"``).
    """
    h, w = size
    H, W = image
    margin = int(margin)
    if h > H or w > W:
        raise ConfigError(f"trigger of size {h}x{w} does not fit in {H}x{W} images")
    pos = parse_position(position)
    if isinstance(pos, str):
        if pos == "random":
            return None
        rows = {"top": margin, "bottom": H - h - margin, "center": (H - h) // 2}
        cols = {"left": margin, "right": W - w - margin, "center": (W - w) // 2}
        rname, cname = ("center", "center") if pos == "center" else pos.split("-")
        r, c = rows[rname], cols[cname]
        return max(0, min(r, H - h)), max(0, min(c, W - w))
    xx, yy = pos
    if not (0 <= yy <= H - h and 0 <= xx <= W - w):
        raise ConfigError(f"position {position!r} puts a {h}x{w} trigger outside {H}x{W} images")
    return yy, xx


def place(
    obj: torch.Tensor,
    image: tuple[int, int],
    n: int,
    position: Any,
    margin: int = 1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Paste a small ``(K, h, w)`` map into zero canvases ``(1|N, K, H, W)`` at a fixed or random spot.

    For "random" each of the ``n`` images gets its own uniformly drawn top-left corner (vectorised).
    """
    k, h, w = obj.shape
    H, W = image
    pos = resolve_position(position, (h, w), (H, W), margin)
    if pos is not None:
        canvas = obj.new_zeros(1, k, H, W)
        canvas[:, :, pos[0] : pos[0] + h, pos[1] : pos[1] + w] = obj
        return canvas
    rows = torch.randint(0, H - h + 1, (n,), generator=generator)
    cols = torch.randint(0, W - w + 1, (n,), generator=generator)
    # For every canvas pixel, its coordinate inside the object (or out of range).
    rr = torch.arange(H).view(1, H, 1) - rows.view(n, 1, 1)  # (n, H, 1)
    cc = torch.arange(W).view(1, 1, W) - cols.view(n, 1, 1)  # (n, 1, W)
    inside = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)  # (n, H, W)
    flat = rr.clamp(0, h - 1) * w + cc.clamp(0, w - 1)  # (n, H, W)
    vals = obj.reshape(k, h * w)[:, flat]  # (k, n, H, W)
    return (vals * inside.unsqueeze(0)).permute(1, 0, 2, 3).contiguous()


# --- option coercion: values may arrive as strings from the CLI (``--trigger-opt k=v``) ---------


def as_float(
    value: Any,
    what: str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
) -> float:
    """A float option (also from strings like ``"0.1"`` or ``"20/255"``), range-checked."""
    try:
        if isinstance(value, bool):
            raise TypeError
        if isinstance(value, str) and "/" in value:
            a, b = value.split("/", 1)
            v = float(a) / float(b)
        else:
            v = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        raise ConfigError(f"{what} must be a number, got {value!r}") from None
    if v != v or v in (float("inf"), float("-inf")):
        raise ConfigError(f"{what} must be finite, got {value!r}")
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise ConfigError(f"{what} must be {'>' if lo_open else '>='} {lo}, got {value!r}")
    if hi is not None and v > hi:
        raise ConfigError(f"{what} must be <= {hi}, got {value!r}")
    return v


def as_int(value: Any, what: str, *, lo: int | None = None, hi: int | None = None) -> int:
    """An integer option (also from strings like ``"3"``), range-checked."""
    try:
        if isinstance(value, bool):
            raise TypeError
        f = float(value.strip()) if isinstance(value, str) else float(value)
        if f != int(f):
            raise ValueError
        v = int(f)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{what} must be an integer, got {value!r}") from None
    if lo is not None and v < lo:
        raise ConfigError(f"{what} must be >= {lo}, got {value!r}")
    if hi is not None and v > hi:
        raise ConfigError(f"{what} must be <= {hi}, got {value!r}")
    return v


def as_bool(value: Any, what: str) -> bool:
    """A boolean option: ``True``/``False``, 0/1, or "true"/"false"/"yes"/"no"/"on"/"off"."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("true", "yes", "on", "1"):
            return True
        if low in ("false", "no", "off", "0"):
            return False
    raise ConfigError(f"{what} must be true or false, got {value!r}")


def as_choice(value: Any, what: str, choices: tuple[str, ...]) -> str:
    """One of ``choices`` (case-insensitive, ``_`` read as ``-``)."""
    v = str(value).strip().lower().replace("_", "-")
    if v not in choices:
        raise ConfigError(f"bad {what} {value!r}: expected one of {', '.join(choices)}")
    return v
