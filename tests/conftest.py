"""Shared fixtures: small real data (Fashion-MNIST subset when installed) and tiny models."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("BACKDOORLAB_NO_PROGRESS", "1")
# One place for the test suite's threads: 2 on the 2-core CI machine; set BACKDOORLAB_TEST_THREADS=1
# on a busy shared machine, where oversubscribed OpenMP threads run many times slower.
torch.set_num_threads(
    int(os.environ.get("BACKDOORLAB_TEST_THREADS", min(2, torch.get_num_threads())))
)

from backdoorlab.data import ImageData, Splits, fashion_mnist_available, load_dataset  # noqa: E402


def _toy_splits(n_train: int = 3000, n_test: int = 1000, seed: int = 0) -> Splits:
    """10 classes of 28x28 images told apart by a class-specific bar position plus noise."""
    g = torch.Generator().manual_seed(seed)

    def make(n: int) -> ImageData:
        y = torch.randint(0, 10, (n,), generator=g)
        x = torch.rand(n, 1, 28, 28, generator=g) * 0.3
        rows = (2 + 2 * y).view(n, 1, 1)
        r = torch.arange(28).view(1, 28, 1)
        x[:, 0] += ((r >= rows) & (r < rows + 2)).float().expand(n, 28, 28)[:, :, :] * 0.6
        return ImageData(x.clamp(0, 1), y, name="toy")

    return Splits(train=make(n_train), test=make(n_test))


@pytest.fixture(scope="session")
def small_splits() -> Splits:
    """~6,000 training and 2,000 test images of Fashion-MNIST (or a toy set when not installed)."""
    if fashion_mnist_available():
        s = load_dataset("fashion-mnist")
        return Splits(train=s.train.per_class(600, seed=0), test=s.test.per_class(200, seed=0))
    return _toy_splits(6000, 2000)
