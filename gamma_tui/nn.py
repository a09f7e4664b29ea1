"""Layers of the paper's parameterization, for writing your own network (`[network] kind =
"module"`) and used by the built-in vmap-path models (engine/functional.py).

The μP + γ layout (docs/science.md §1): every weight starts i.i.d. N(0, 1) and every bias at 0, and
the width scaling lives only in forward multipliers: a hidden layer divides its output by
sqrt(fan_in), the readout by fan_in. A network built from these layers (with LayerNorm or
BatchNorm at their default gains 1 and biases 0 where it normalizes) follows the
parameterization by construction; gamma-tui then divides f_mu by γ, centers it with the
frozen initial copy and steps every parameter by N·η.

    from torch import nn
    from gamma_tui.nn import Linear, Readout

    def build(input_shape, outputs, width):
        return nn.Sequential(nn.Flatten(), Linear(input_shape[0], width), nn.ReLU(),
                             Readout(width, outputs))

The layers draw their weights when built (`reset_parameters`), so the module the factory
returns is the initial draw; gamma-tui builds it under `torch.manual_seed(seed)`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Conv2d", "Linear", "Readout"]


class Linear(nn.Module):
    """A hidden linear layer: (W x + b) / sqrt(fan_in), W ~ N(0, 1), b = 0."""

    def __init__(self, fan_in: int, fan_out: int, bias: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(fan_out, fan_in))
        self.bias = nn.Parameter(torch.empty(fan_out)) if bias else None
        self.multiplier = self.scale(fan_in)
        self.reset_parameters()

    @staticmethod
    def scale(fan_in: int) -> float:
        """The forward multiplier of a layer with this fan-in."""
        return 1.0 / math.sqrt(fan_in)

    def reset_parameters(self) -> None:
        """The initial draw: N(0, 1) weights, zero bias."""
        nn.init.normal_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias) * self.multiplier

    def extra_repr(self) -> str:
        fan_out, fan_in = self.weight.shape
        return (
            f"{fan_in}, {fan_out}, bias={self.bias is not None}, multiplier={self.multiplier:.3g}"
        )


class Readout(Linear):
    """The μP readout: (W x + b) / fan_in, W ~ N(0, 1), b = 0."""

    @staticmethod
    def scale(fan_in: int) -> float:
        return 1.0 / fan_in


class Conv2d(nn.Module):
    """A hidden convolution divided by sqrt(C_in), W ~ N(0, 1), b = 0.

    The multiplier is 1/sqrt(C_in), not 1/sqrt(C_in·k²): the reference code's StdConv2d and
    the paper's CNN (docs/science.md §1). `padding` defaults to kernel // 2 (the output keeps the
    input's size at stride 1).
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int,
        stride: int = 1,
        padding: int | None = None,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(c_out, c_in, kernel, kernel))
        self.bias = nn.Parameter(torch.empty(c_out)) if bias else None
        self.stride = stride
        self.padding = kernel // 2 if padding is None else padding
        self.multiplier = 1.0 / math.sqrt(c_in)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The initial draw: N(0, 1) weights, zero bias."""
        nn.init.normal_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(x, self.weight, self.bias, stride=self.stride, padding=self.padding)
        return out * self.multiplier

    def extra_repr(self) -> str:
        c_out, c_in, kernel, _ = self.weight.shape
        return (
            f"{c_in}, {c_out}, kernel={kernel}, stride={self.stride}, padding={self.padding}, "
            f"bias={self.bias is not None}, multiplier={self.multiplier:.3g}"
        )
