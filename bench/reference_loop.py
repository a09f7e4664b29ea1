"""The per-run loop of the engine benchmark, written the way the reference code trains.

Pehlevan-Group/Richness_Sweep trains one run at a time: an nn.Module, a frozen deepcopy of it
for centering (its CenteredModel), f = (model(x) - model0(x))/γ, the loss, a torch.optim
optimizer over all parameters, zero_grad/backward/step and `loss.item()` every step. This
module does the same for every model kind of the engine, with the engine's initial weights
for the run's seed, so both sides start from identical parameters:

- MLP: StdLinear = Linear/sqrt(fan_in), FinalLinear = Linear/fan_in (bias-free).
- CNN: StdConv2d = Conv2d/sqrt(C_in), then the same linear layers (bias-free).
- ResNet-18 and ViT: the engine's own nn.Module definitions (engine/functional.py), which are
  ordinary modules; the engine runs them under vmap, the loop calls them as they are.

SGD runs use torch.optim.SGD(lr=N·η), Adam runs torch.optim.Adam(lr=η) (its defaults are the
engine's β and ε). A run stops at its first NaN/inf loss or loss > divergence_factor × initial.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from gamma_tui.config import RunSpec
from gamma_tui.engine.convnet import ConvArchitecture
from gamma_tui.engine.functional import FunctionalArchitecture
from gamma_tui.engine.optimizers import step_sizes
from gamma_tui.engine.parameterization import Architecture, init_weights


class StdLinear(nn.Module):
    """Linear layer, N(0,1) weights, output divided by sqrt(fan_in) (reference StdLinear)."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_in, n_out, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) / math.sqrt(x.shape[-1])


class FinalLinear(nn.Module):
    """μP readout: output divided by fan_in (reference FinalLinear)."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_in, n_out, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) / x.shape[-1]


class StdConv2d(nn.Module):
    """3×3 convolution, N(0,1) weights, output divided by sqrt(C_in) (reference StdConv2d)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) / math.sqrt(x.shape[-3])


class ReferenceCNN(nn.Module):
    """The reference CNN (vision_tasks/models.py) without its 1/γ, which train_one applies."""

    def __init__(self, arch: ConvArchitecture) -> None:
        super().__init__()
        channels, n = arch.input_shape[0], arch.width
        height, width = arch.feature_shape
        self.conv1, self.conv2 = StdConv2d(channels, n), StdConv2d(n, 2 * n)
        self.fc1 = StdLinear(2 * n * height * width, 8 * n)
        self.fc2 = FinalLinear(8 * n, arch.outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(F.relu(self.conv1(x)), 2, 2)
        x = F.avg_pool2d(F.relu(self.conv2(x)), 2, 2)
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


def build_mlp(arch: Architecture, seed: int, dtype: torch.dtype, device: torch.device) -> nn.Module:
    """The reference MLP with the engine's initial weights for `seed` (bias-free)."""
    widths = arch.widths
    layers: list[nn.Module] = []
    for i in range(arch.depth - 1):
        layers += [StdLinear(widths[i], widths[i + 1]), nn.ReLU()]
    layers.append(FinalLinear(widths[-2], widths[-1]))
    model = nn.Sequential(*layers).to(device=device, dtype=dtype)
    linears = [m.linear for m in model if isinstance(m, (StdLinear, FinalLinear))]
    load(linears, init_weights(arch, seed))
    return model


def build_cnn(
    arch: ConvArchitecture, seed: int, dtype: torch.dtype, device: torch.device
) -> nn.Module:
    """The reference CNN with the engine's initial weights for `seed` (bias-free)."""
    model = ReferenceCNN(arch).to(device=device, dtype=dtype)
    load([model.conv1.conv, model.conv2.conv, model.fc1.linear, model.fc2.linear], arch.init(seed))
    return model


def build_module(
    arch: FunctionalArchitecture,
    make: Callable[[], nn.Module],
    seed: int,
    dtype: torch.dtype,
    device: torch.device,
) -> nn.Module:
    """An engine module (ResNet-18, ViT) as a real module with the engine's init for `seed`."""
    model = make().to(device=device, dtype=dtype)
    with torch.no_grad():
        for param, value in zip(model.parameters(), arch.init(seed), strict=True):
            param.copy_(value)
    return model


def load(layers: list[nn.Module], weights: list[torch.Tensor]) -> None:
    """Copy the engine's initial weights into bias-free layers (a biased init has more tensors
    than layers, and the strict zip refuses it)."""
    with torch.no_grad():
        for layer, weight in zip(layers, weights, strict=True):
            layer.weight.copy_(weight)  # type: ignore[operator]


def train_one(
    spec: RunSpec,
    build: Callable[[int], nn.Module],
    width: int,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
) -> tuple[float, int | None]:
    """One run as the reference trains it; returns (last loss, diverged step or None)."""
    torch.manual_seed(spec.seed)
    model = build(spec.seed)
    model0 = copy.deepcopy(model)
    for param in model0.parameters():
        param.requires_grad = False
    (lr,) = step_sizes(spec.optimizer, [spec.eta], width)
    if spec.optimizer == "adam":
        optimizer: torch.optim.Optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    loss_fn = F.mse_loss if spec.loss == "mse" else F.cross_entropy
    gamma, init_loss, value = spec.gamma, None, math.nan
    for step, (x, target) in enumerate(batches):
        optimizer.zero_grad()
        f = (model(x) - model0(x)) / gamma
        loss = loss_fn(f, target)
        loss.backward()
        optimizer.step()
        value = loss.item()
        if init_loss is None:
            init_loss = value
        if not math.isfinite(value) or value > spec.divergence_factor * max(init_loss, 1e-30):
            return value, step
    return value, None
