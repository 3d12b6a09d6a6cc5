"""Small image classifiers for backdoor research, registered by name (timm-style).

Every factory takes ``num_classes``, ``in_channels`` and ``input_size`` (square side), so one
registry serves 28x28 grayscale and 32x32 RGB data alike.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..registry import Registry

MODELS: Registry[Any] = Registry("models")


def _conv_out(size: int, k: int, pad: int = 0, stride: int = 1) -> int:
    return (size + 2 * pad - k) // stride + 1


@MODELS.register("badnets_cnn", "BadNets CNN of Gu et al. 2017 (2 conv 5x5 + FC 512), for 28x28")
class BadNetsCNN(nn.Module):
    """The MNIST network of Gu, Dolan-Gavitt & Garg, "BadNets", 2017 (Table 1): conv16-conv32-fc512."""

    def __init__(
        self, num_classes: int = 10, in_channels: int = 1, input_size: int = 28, width: int = 16
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 5)
        self.conv2 = nn.Conv2d(width, 2 * width, 5)
        s = _conv_out(_conv_out(input_size, 5) // 2, 5) // 2
        self.fc1 = nn.Linear(2 * width * s * s, 512)
        self.fc2 = nn.Linear(512, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Last convolutional feature map ``(N, 2*width, s, s)``."""
        x = F.avg_pool2d(F.relu(self.conv1(x)), 2)
        return F.avg_pool2d(F.relu(self.conv2(x)), 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.fc1(self.features(x).flatten(1)))
        return self.fc2(h)


@MODELS.register("lenet5", "LeNet-5 (LeCun et al. 1998), ReLU and max-pool variant")
class LeNet5(nn.Module):
    """LeNet-5 of LeCun, Bottou, Bengio & Haffner, Proc. IEEE 1998, with ReLU and max-pooling."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size: int = 28) -> None:
        super().__init__()
        pad = 2 if input_size == 28 else 0
        self.conv1 = nn.Conv2d(in_channels, 6, 5, padding=pad)
        self.conv2 = nn.Conv2d(6, 16, 5)
        s = _conv_out(_conv_out(input_size, 5, pad) // 2, 5) // 2
        self.fc1 = nn.Linear(16 * s * s, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Last convolutional feature map."""
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        return F.max_pool2d(F.relu(self.conv2(x)), 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.fc1(self.features(x).flatten(1)))
        return self.fc3(F.relu(self.fc2(h)))


@MODELS.register(
    "small_cnn", "VGG-style small CNN (2x2 conv blocks + FC), any input size; width/bn options"
)
class SmallCNN(nn.Module):
    """A small VGG-style CNN: [conv-conv-pool] x 2, then FC 256 -> classes; for 28x28 or 32x32 input."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        input_size: int = 32,
        width: int = 32,
        bn: bool = False,
    ) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=not bn)]
            if bn:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.ReLU(inplace=True))
            return layers

        w = width
        self.body = nn.Sequential(
            *block(in_channels, w),
            *block(w, w),
            nn.MaxPool2d(2),
            *block(w, 2 * w),
            *block(2 * w, 2 * w),
            nn.MaxPool2d(2),
        )
        s = input_size // 4
        self.fc1 = nn.Linear(2 * w * s * s, 256)
        self.fc2 = nn.Linear(256, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Last convolutional feature map ``(N, 2*width, H/4, W/4)``."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(self.features(x).flatten(1))))


@MODELS.register(
    "gap_cnn", "all-conv net with global average pooling and a linear head; width/bn options"
)
class GapCNN(nn.Module):
    """Three conv stages (stride-2 downsampling) then global average pooling and one linear layer."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        input_size: int = 28,
        width: int = 32,
        bn: bool = True,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for i, cout in enumerate((width, 2 * width, 4 * width)):
            layers.append(
                nn.Conv2d(cin, cout, 3, stride=1 if i == 0 else 2, padding=1, bias=not bn)
            )
            if bn:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.ReLU(inplace=True))
            cin = cout
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(cin, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Last convolutional feature map."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, preact: bool) -> None:
        super().__init__()
        self.preact = preact
        self.bn1 = nn.BatchNorm2d(cin if preact else cout)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            sc: list[nn.Module] = [nn.Conv2d(cin, cout, 1, stride, bias=False)]
            if not preact:
                sc.append(nn.BatchNorm2d(cout))
            self.shortcut = nn.Sequential(*sc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.preact:
            o = F.relu(self.bn1(x))
            sc = self.shortcut(o) if not isinstance(self.shortcut, nn.Identity) else x
            o = self.conv1(o)
            o = self.conv2(F.relu(self.bn2(o)))
            return o + sc
        o = F.relu(self.bn1(self.conv1(x)))
        o = self.bn2(self.conv2(o))
        return F.relu(o + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 (He et al., CVPR 2016) adapted to 32x32: 3x3 stem, no max-pool; optional pre-activation
    (He et al., ECCV 2016)."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        input_size: int = 32,
        width: int = 64,
        preact: bool = False,
    ) -> None:
        super().__init__()
        self.preact = preact
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        blocks: list[nn.Module] = []
        cin = width
        for i, cout in enumerate((width, 2 * width, 4 * width, 8 * width)):
            for j in range(2):
                blocks.append(_BasicBlock(cin, cout, 2 if (j == 0 and i > 0) else 1, preact))
                cin = cout
        self.layers = nn.Sequential(*blocks)
        self.bn_final = nn.BatchNorm2d(cin) if preact else nn.Identity()
        self.fc = nn.Linear(cin, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Last convolutional feature map."""
        o = self.conv1(x)
        if not self.preact:
            o = F.relu(self.bn1(o))
        o = self.layers(o)
        if self.preact:
            o = F.relu(self.bn_final(o))
        return o

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


@MODELS.register(
    "resnet18", "ResNet-18 adapted to 32x32 inputs (3x3 stem, no max-pool); GPU recommended"
)
def resnet18(
    num_classes: int = 10, in_channels: int = 3, input_size: int = 32, width: int = 64
) -> ResNet18:
    """ResNet-18 of He, Zhang, Ren & Sun, CVPR 2016, CIFAR variant."""
    return ResNet18(num_classes, in_channels, input_size, width, preact=False)


@MODELS.register("preact_resnet18", "Pre-activation ResNet-18 for 32x32 inputs; GPU recommended")
def preact_resnet18(
    num_classes: int = 10, in_channels: int = 3, input_size: int = 32, width: int = 64
) -> ResNet18:
    """Pre-activation ResNet-18 of He, Zhang, Ren & Sun, ECCV 2016, CIFAR variant."""
    return ResNet18(num_classes, in_channels, input_size, width, preact=True)


def create_model(
    name: str,
    *,
    num_classes: int = 10,
    input_shape: tuple[int, int, int] = (1, 28, 28),
    seed: int | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model for inputs of ``input_shape`` (C, H, W); ``seed`` fixes the init.

    Example:
        >>> m = create_model("badnets_cnn", num_classes=10, input_shape=(1, 28, 28), seed=0)
        >>> m(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """
    c, h, w = input_shape
    if h != w:
        from ..errors import ConfigError

        raise ConfigError(f"model {name!r}: square inputs expected, got input_shape {input_shape}")
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = MODELS.create(
                name, num_classes=num_classes, in_channels=c, input_size=h, **kwargs
            )
    else:
        model = MODELS.create(name, num_classes=num_classes, in_channels=c, input_size=h, **kwargs)
    model.arch_config = {
        "arch": name,
        "num_classes": num_classes,
        "input_shape": list(input_shape),
        "kwargs": dict(kwargs),
    }
    return model


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a glob pattern."""
    return MODELS.names(pattern)
