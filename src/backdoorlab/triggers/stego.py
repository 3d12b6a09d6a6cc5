"""LSB steganography trigger: a text message hidden in the least-significant bits of every pixel.

Li, Xue, Zhao, Zhu & Zhang, "Invisible Backdoor Attacks on Deep Neural Networks via Steganography
and Regularization", IEEE Transactions on Dependable and Secure Computing (TDSC) 18(5), 2021
(online 2020), Sec. on the steganography-based attack; survey: Li, Ma, Xue & Zhao, "Deep Learning
Backdoors", arXiv 2007.08273, 2020 (invisible triggers).

The trigger is a text (``message``) turned into bits (UTF-8 bytes, most significant bit first);
the paper observes that a short message hidden once is hard to learn and repeats it until the
whole image is covered, which is what this trigger does. Each image is quantised to 8 bits,
``q = round(255 x)``; the bit stream fills the ``bits`` low bits of the values in ``(C, H, W)``
row-major order (the first stream bit is the highest of the ``bits`` bits of value 0), and
``x' = q' / 255``. So every uint8 value changes by less than ``2 ** bits``, and
:func:`lsb_decode` recovers the message exactly from ``round(255 x')``. All integer tensor ops.

Deviation: the paper embeds the text in 1 LSB. Measured on Fashion-MNIST (BadNets dirty-label
poisoning at 10 %, ``badnets_cnn``, 5 epochs): ``bits=1`` gives an ASR of 0.03 (not learned),
``bits=2`` 0.96 with clean accuracy unchanged, so the default here is ``bits=2`` (every uint8
value changes by at most 3); ``bits=1`` reproduces the paper's setting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import ConfigError
from .base import TRIGGERS, Trigger, as_int


def message_bits(message: str) -> torch.Tensor:
    """The UTF-8 bytes of ``message`` as a ``(8 * nbytes,)`` long tensor of 0/1, MSB first.

    Example:
        >>> message_bits("A").tolist()
        [0, 1, 0, 0, 0, 0, 0, 1]
    """
    data = torch.tensor(list(message.encode("utf-8")), dtype=torch.long)
    shifts = torch.arange(7, -1, -1)
    return ((data.view(-1, 1) >> shifts) & 1).flatten()


def lsb_payload(message: str, bits: int, numel: int) -> torch.Tensor:
    """Per-value payloads ``(numel,)`` in ``[0, 2**bits)``: the message's bits repeated to fill."""
    stream = message_bits(message)
    need = numel * bits
    reps = -(-need // stream.numel())
    s = stream.repeat(reps)[:need].view(numel, bits)
    weights = 2 ** torch.arange(bits - 1, -1, -1)
    return (s * weights).sum(1)


def lsb_encode(x: torch.Tensor, message: str, bits: int = 2) -> torch.Tensor:
    """Hide ``message`` (repeated) in the ``bits`` LSBs of ``round(255 x)`` of every image."""
    n = x.shape[0]
    per = math.prod(x.shape[1:])
    # uint8 arithmetic: 8x less memory traffic than int64
    q = torch.round(x.detach().clamp(0, 1) * 255).to(torch.uint8).reshape(n, per)
    payload = lsb_payload(message, bits, per).to(device=x.device, dtype=torch.uint8)
    keep = 0xFF ^ ((1 << bits) - 1)
    return (((q & keep) | payload).to(x.dtype) / 255).reshape(x.shape)


def lsb_decode(x: torch.Tensor, bits: int = 2, n_chars: int = 11) -> list[str]:
    """The first ``n_chars`` bytes hidden in each image of a triggered float batch, as text.

    Reads ``round(255 x) & (2**bits - 1)`` in the same order as :func:`lsb_encode`; bytes that are
    not valid UTF-8 decode to the replacement character.
    """
    bits = as_int(bits, "lsb bits", lo=1, hi=8)
    n = x.shape[0]
    q = torch.round(x.clamp(0, 1) * 255).to(torch.long).reshape(n, -1)
    need_vals = -(-(8 * n_chars) // bits)
    if need_vals > q.shape[1]:
        raise ConfigError(
            f"lsb_decode: {n_chars} characters need {need_vals} values, images have {q.shape[1]}"
        )
    low = q[:, :need_vals] & ((1 << bits) - 1)
    shifts = torch.arange(bits - 1, -1, -1, device=x.device)
    stream = ((low.unsqueeze(-1) >> shifts) & 1).reshape(n, -1)[:, : 8 * n_chars]
    byte = (stream.view(n, n_chars, 8) * (2 ** torch.arange(7, -1, -1, device=x.device))).sum(-1)
    return [bytes(row.tolist()).decode("utf-8", errors="replace") for row in byte.cpu()]


@TRIGGERS.register(
    "lsb", "LSB steganography (Li et al. TDSC 2020): a text repeated in the low bits of every pixel"
)
@dataclass
class LsbTrigger(Trigger):
    """Hide ``message`` (repeated over the image) in the ``bits`` least-significant bits of each value."""

    message: str = "backdoorlab"
    bits: int = 2
    name = "lsb"

    def __post_init__(self) -> None:
        self.message = str(self.message)
        if not self.message:
            raise ConfigError("lsb message must not be empty")
        self.bits = as_int(self.bits, "lsb bits", lo=1, hi=8)

    @property
    def n_chars(self) -> int:
        """Length of the message in bytes (what :func:`lsb_decode` needs)."""
        return len(self.message.encode("utf-8"))

    def apply(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return lsb_encode(x, self.message, self.bits)


__all__ = ["LsbTrigger", "lsb_decode", "lsb_encode", "lsb_payload", "message_bits"]
