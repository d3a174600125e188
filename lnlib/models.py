"""Models: ``small_cnn`` (CPU default), ``wrn40_2`` (the LogitNorm paper's net), ``resnet18`` (CIFAR
variant) and ``mlp`` (2-D toys).

All are pure ReLU networks whose last layer is linear. With BatchNorm in eval mode (an affine map),
max-pooling and average pooling, each is a continuous piecewise-affine function of its input: the setting of
Hein et al. (CVPR 2019), Theorem 3.1, used by ``lnlib.faraway``. Every model maps ``(N, C, H, W)`` (or
``(N, D)`` for ``mlp``) to logits ``(N, K)`` and exposes ``features(x)`` (penultimate layer) and
``head`` (the final ``nn.Linear``), which post-hoc scores such as GradNorm need.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from lnlib.data import ID_SETS


class Classifier(nn.Module):
    """``logits = head(features(x))``; ``features`` ends with the penultimate activations."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# ------------------------------------------------------------------------------------------ small_cnn
def _conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class SmallCNN(Classifier):
    """Three conv-BN-ReLU stages with 2x2 max-pooling, global average pooling, dropout, linear head.

    ``(N, C, H, W) -> (N, K)``. Widths ``(16, 32, 64)``: 0.06 M parameters and 7.5 MFLOP (forward) per 28x28
    image, so an epoch of Fashion-MNIST takes tens of seconds on two CPU cores.
    """

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.0, widths=(16, 32, 64)):
        super().__init__()
        a, b, c = widths
        self.body = nn.Sequential(
            *_conv_bn_relu(in_channels, a), nn.MaxPool2d(2),
            *_conv_bn_relu(a, b), nn.MaxPool2d(2),
            *_conv_bn_relu(b, c), *_conv_bn_relu(c, c),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
        )
        self.head = nn.Linear(c, num_classes)

    def features(self, x):
        return self.body(x)


# ----------------------------------------------------------------------------------------- WideResNet
class _WideBlock(nn.Module):
    """Pre-activation basic block (BN-ReLU-conv x2) with dropout between the convs (Zagoruyko & Komodakis)."""

    def __init__(self, c_in: int, c_out: int, stride: int, dropout: float):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(c_in), nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(c_out), nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.dropout = dropout
        self.shortcut = None if c_in == c_out else nn.Conv2d(c_in, c_out, 1, stride, 0, bias=False)

    def forward(self, x):
        o = F.relu(self.bn1(x))
        # As in the reference WRN code: a projection shortcut sees the pre-activated input.
        shortcut = x if self.shortcut is None else self.shortcut(o)
        o = self.conv1(o)
        o = F.relu(self.bn2(o))
        o = F.dropout(o, p=self.dropout, training=self.training)
        return self.conv2(o) + shortcut


class WideResNet(Classifier):
    """WRN-depth-k for 32x32 inputs; ``wrn40_2`` is the LogitNorm paper's network (dropout 0.3 there).

    ``(N, C, 32, 32) -> (N, K)``; 2.2 M parameters for depth 40, widen 2. Final layer ``Linear(64k, K)``.
    """

    def __init__(self, in_channels, num_classes, depth=40, widen=2, dropout=0.0):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WideResNet depth={depth} must be 6n+4")
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        layers = [nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)]
        for stage, stride in enumerate((1, 2, 2)):
            for i in range(n):
                layers.append(_WideBlock(widths[stage] if i == 0 else widths[stage + 1], widths[stage + 1],
                                         stride if i == 0 else 1, dropout))
        layers += [nn.BatchNorm2d(widths[3]), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(widths[3], num_classes)
        for m in self.modules():  # He init for convs, zero bias for the head, as in the reference code
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def features(self, x):
        return self.body(x)


# ------------------------------------------------------------------------------------------- ResNet-18
class _BasicBlock(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out)
        self.conv2, self.bn2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        o = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(o)) + self.shortcut(x))


class ResNet18(Classifier):
    """ResNet-18, CIFAR variant (3x3 stem, no max-pool), as in OpenOOD's ``resnet18_32x32``. 11 M params."""

    def __init__(self, in_channels, num_classes, dropout=0.0):
        super().__init__()
        layers = [nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True)]
        c_in = 64
        for c_out, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [_BasicBlock(c_in, c_out, stride), _BasicBlock(c_out, c_out, 1)]
            c_in = c_out
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(512, num_classes)

    def features(self, x):
        return self.body(x)


# ------------------------------------------------------------------------------------------------ MLP
class MLP(Classifier):
    """Fully connected ReLU network on flattened inputs: ``(N, ...) -> (N, K)``. For the 2-D toys."""

    def __init__(self, in_features, num_classes, hidden=(100, 100, 100), dropout=0.0):
        super().__init__()
        layers, d = [nn.Flatten()], in_features
        for h in hidden:
            layers += [nn.Linear(d, h), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            d = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(d, num_classes)

    def features(self, x):
        return self.body(x)


MODELS = {
    "small_cnn": lambda shape, k, dropout: SmallCNN(shape[0], k, dropout),
    "wrn40_2": lambda shape, k, dropout: WideResNet(shape[0], k, 40, 2, dropout),
    "resnet18": lambda shape, k, dropout: ResNet18(shape[0], k, dropout),
    "mlp": lambda shape, k, dropout: MLP(math.prod(shape), k, dropout=dropout),
}


def create_model(name: str, in_shape: tuple[int, ...], num_classes: int, dropout: float = 0.0) -> Classifier:
    """Build model ``name`` for inputs of shape ``in_shape`` (without batch) and ``num_classes`` outputs."""
    if name not in MODELS:
        raise ValueError(f"model={name!r} is not valid; choose one of {sorted(MODELS)}")
    return MODELS[name](tuple(in_shape), num_classes, dropout)


def build_model(cfg) -> Classifier:
    """The model a :class:`~lnlib.config.TrainConfig` describes (seeded by ``cfg.seed``), in the memory
    format it trains in; ``.to(device)`` and ``load_state_dict`` keep that format."""
    spec = ID_SETS[cfg.dataset]
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model, spec.shape, cfg.num_classes, cfg.dropout)  # less any held-out classes
    return model.to(memory_format=torch.channels_last) if cfg.channels_last else model

