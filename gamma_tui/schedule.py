"""The recording schedule: which steps a run records and how, shared by the engine (what to
measure), the cache (how curves are stored) and the cost model (how much evaluation costs).

Curves keep every step up to a run's `curve_cap`, then means over windows that double in
width every octave of steps, which keeps a curve's shape on a log-time axis at bounded size.
Held-out evaluations and diagnostics happen at steps 0, 1, 2, 5, 10, 20, 50, ...
Pure functions of integers and numpy arrays; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Chunk:
    """Curve values of consecutive windows of `window` steps starting at `start_step`."""

    start_step: int
    window: int
    values: np.ndarray


def window_at(step: int, cap: int) -> int:
    """Width of the recording window holding `step`: 1 below `cap`, doubling every octave above.

    Steps in [cap·2^k, cap·2^(k+1)) are averaged in windows of 2^(k+1), so each octave past the
    cap holds cap/2 points; window boundaries are aligned so chunks never split a window.
    """
    if step < cap:
        return 1
    octave = (step // cap).bit_length() - 1
    return 2 ** (octave + 1)


def next_boundary(step: int, cap: int) -> int:
    """The smallest window boundary >= step (a step where a new window starts)."""
    if step <= cap:
        return step
    octave_start = cap * 2 ** ((step // cap).bit_length() - 1)
    width = window_at(step, cap)
    return octave_start + -(-(step - octave_start) // width) * width


def is_eval_step(step: int) -> bool:
    """Whether held-out evaluation happens at `step`: 0 and 1, 2, 5 times powers of ten."""
    if step == 0:
        return True
    while step % 10 == 0:
        step //= 10
    return step in (1, 2, 5)


def reduce_losses(start: int, losses: np.ndarray, cap: int) -> list[Chunk]:
    """Average per-step losses from step `start` into chunks of equal window width.

    Windows follow `window_at`; a window cut by the start or end of `losses` (a commit in
    mid-window) becomes a chunk of one shorter window, so chunks can be written at any step.
    """
    chunks, offset = [], 0
    while offset < len(losses):
        step, left = start + offset, len(losses) - offset
        width = window_at(step, cap)
        segment_end = cap if step < cap else cap * 2 ** ((step // cap).bit_length())
        head = next_boundary(step, cap) - step
        if head:
            count, width = 1, min(head, left)
        else:
            count = min(segment_end - step, left) // width
            if count == 0:
                count, width = 1, min(segment_end - step, left)
        block = losses[offset : offset + count * width].astype(np.float64)
        values = block.reshape(count, width).mean(axis=1).astype(np.float32)
        chunks.append(Chunk(step, width, values))
        offset += count * width
    return chunks
