"""The reference code's CNN as a batched ensemble, in the μP + γ + centering parameterization.

Layout (Pehlevan-Group/Richness_Sweep, vision_tasks/models.py; PAPER.md §1), input C×H×W:

    conv 3×3, C → N channels, no padding, divided by sqrt(C);   ReLU; 2×2 average pool
    conv 3×3, N → 2N channels, no padding, divided by sqrt(N);  ReLU; 2×2 average pool
    linear (2N·h·w → 8N) divided by sqrt(fan_in);               ReLU
    linear (8N → classes) divided by 8N (μP readout)

N(0, 1) weights, zero biases, step size N·η, depth label L = 4. The members of an ensemble
share the input batch: the first convolution of all members is one convolution with E·N
output channels, the second a grouped convolution (groups = E), and the linear layers are
batched matmuls. Gradients come from autograd (functional.AutogradEnsemble); for SGD the step
size is folded into the output gradient, so every parameter then moves by minus its gradient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gamma_tui.engine.functional import AutogradEnsemble


@dataclass(frozen=True)
class ConvArchitecture:
    """Shapes of the reference CNN on C×H×W inputs with `outputs` classes."""

    input_shape: tuple[int, int, int]
    width: int  # N, which also sets the step size N·η
    outputs: int
    bias: bool

    depth_label = 4

    @property
    def feature_shape(self) -> tuple[int, int]:
        """Spatial size after the two conv + pool stages."""
        _, height, width = self.input_shape
        return ((height - 2) // 2 - 2) // 2, ((width - 2) // 2 - 2) // 2

    def shapes(self) -> list[tuple[int, ...]]:
        """Per-member parameter shapes, weights then (if enabled) biases, layer by layer."""
        channels, n = self.input_shape[0], self.width
        h, w = self.feature_shape
        weights = [
            (n, channels, 3, 3),
            (2 * n, n, 3, 3),
            (8 * n, 2 * n * h * w),
            (self.outputs, 8 * n),
        ]
        shapes: list[tuple[int, ...]] = []
        for shape in weights:
            shapes.append(shape)
            if self.bias:
                shapes.append((shape[0],))
        return shapes

    def parameter_count(self) -> int:
        """Parameters of one member."""
        return sum(math.prod(shape) for shape in self.shapes())

    def activation_elements(self, batch_size: int) -> int:
        """Activations of one member per batch (for memory planning)."""
        _, height, width = self.input_shape
        n = self.width
        return batch_size * (n * height * width + 2 * n * height * width // 4 + 8 * n)

    def init(self, seed: int) -> list[torch.Tensor]:
        """One member's initial parameters: N(0, 1) weights, zero biases (float64, CPU)."""
        generator = torch.Generator().manual_seed(seed)
        return [
            torch.zeros(shape, dtype=torch.float64)
            if len(shape) == 1 and self.bias
            else torch.randn(shape, generator=generator, dtype=torch.float64)
            for shape in self.shapes()
        ]

    def ensemble(self, params: list[torch.Tensor]) -> EnsembleCNN:
        """An ensemble over stacked parameters (E, *shape)."""
        return EnsembleCNN(self, params)


class EnsembleCNN(AutogradEnsemble):
    """E CNN members trained in lockstep on a shared batch."""

    def __init__(self, arch: ConvArchitecture, params: list[torch.Tensor]) -> None:
        super().__init__(params)
        self.arch = arch

    def _layer(self, index: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        step = 2 if self.arch.bias else 1
        weight = self.params[index * step]
        return weight, self.params[index * step + 1] if self.arch.bias else None

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """f_mu (E, B, C) for inputs (B, C, H, W)."""
        members, batch = self.size, x.shape[0]
        hidden = self._conv(x, 0, groups=1)
        hidden = self._conv(hidden, 1, groups=members)
        features = hidden.reshape(batch, members, -1).transpose(0, 1)
        weight, bias = self._layer(2)
        hidden = torch.relu(self._linear(features, weight, bias) / math.sqrt(weight.shape[2]))
        weight, bias = self._layer(3)
        return self._linear(hidden, weight, bias) / weight.shape[2]

    def _conv(self, x: torch.Tensor, layer: int, groups: int) -> torch.Tensor:
        """Convolution of every member (stacked along channels), ReLU and 2×2 average pool."""
        weight, bias = self._layer(layer)
        flat = weight.reshape(-1, *weight.shape[2:])
        scale = 1.0 / math.sqrt(weight.shape[2])
        out = F.conv2d(x, flat, None if bias is None else bias.reshape(-1), groups=groups) * scale
        return F.avg_pool2d(torch.relu(out), 2, 2)

    @staticmethod
    def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        out = torch.bmm(x, weight.transpose(1, 2))
        return out if bias is None else out + bias[:, None, :]
