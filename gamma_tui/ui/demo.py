"""Fake sweeps written through the real Cache API: synthetic curves for tests, benchmarks and demos.

No training happens here: every run gets a closed-form loss curve with the paper's shape (a
plateau, a power-law descent whose time scale is t·η·γ^-k, a noise floor that grows with η,
divergence above η_div(γ) ∝ γ^p), committed exactly as a worker would commit it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from gamma_tui.cache import Cache, Progress
from gamma_tui.config import Preset, RunSpec, expand, parse_preset, predicted_eta_exponent
from gamma_tui.schedule import is_eval_step, reduce_losses

FAKE_OWNER = "fake-host:0:demo"
"""Lease owner of the runs a fake sweep leaves running (host:pid:tag like a real worker's; the
host is not this one, so `gamma-tui stop` leaves it alone)."""

FOREVER = 1e12
"""Lease length that keeps fake running runs 'running' (not 'interrupted') in tests."""

TRUE_K = 1.0
"""The synthetic curves collapse exactly under t·η·γ^-TRUE_K (before the noise floor)."""

StateOf = Callable[[RunSpec, int], tuple[str, int]]
"""Maps (spec, index in expand order) to (status, steps_done) for a fake sweep."""


def fake_preset_text(
    name: str = "demo",
    gammas: tuple[float, float, float] = (0.1, 100.0, 1.0),
    etas: tuple[float, float, float] = (0.01, 10.0, 2.0),
    seeds: int = 2,
    steps: int = 1000,
    depth: int = 2,
    scale: str = "relative",
    curve_cap: int = 10_000,
) -> str:
    """TOML of a small preset: (min, max, per_decade) for the γ and η grids."""
    return (
        f'name = "{name}"\ndescription = "synthetic sweep (no training)"\nseeds = {seeds}\n'
        f"[network]\nwidth = 32\ndepth = {depth}\n"
        f'[data]\nkind = "teacher_mlp"\ninput_dim = 16\n'
        f"[train]\nsteps = {steps}\nbatch_size = 16\ncurve_cap = {curve_cap}\n"
        f"[gamma]\nmin = {gammas[0]}\nmax = {gammas[1]}\nper_decade = {gammas[2]}\n"
        f'[eta]\nscale = "{scale}"\nmin = {etas[0]}\nmax = {etas[1]}\nper_decade = {etas[2]}\n'
    )


def eta_divergence(gamma: float, depth: int) -> float:
    """The synthetic edge of stability: 3·γ^p (p = 2 lazy, 2/L rich)."""
    return 3.0 * gamma ** predicted_eta_exponent(gamma, depth)


def synthetic_curve(spec: RunSpec, steps: int, start: int = 0) -> tuple[np.ndarray, int | None]:
    """Per-step losses for steps [start, steps) and the step of divergence (None if stable)."""
    depth = spec.network.depth
    edge = eta_divergence(spec.gamma, depth)
    t = np.arange(start, steps, dtype=np.float64)
    x = (t + 1.0) * spec.eta * spec.gamma ** (-TRUE_K) / 40.0
    floor = 0.02 * (spec.eta / edge) + 1e-3
    seed_scale = 1.0 + 0.04 * (spec.seed - 0.5)
    loss = 1.0 / (1.0 + x**1.3) * seed_scale + floor
    # Deterministic per-step noise: the same step of the same run always gets the same value.
    noise = np.sin(t * 12.9898 + spec.seed * 78.233) * 0.03
    loss = loss * (1.0 + noise)
    diverged = None
    if spec.eta > edge:
        diverged = int(max(3, 40 * edge / spec.eta))
        grow = np.exp(np.clip(t - diverged + 8, 0, 60) * 1.5)
        loss = loss * grow
        loss[t >= diverged] = np.inf
    return loss.astype(np.float32), diverged


def register_fake(cache: Cache, preset_text: str) -> tuple[Preset, list[RunSpec]]:
    """Register the preset's sweep in the cache; returns the preset and its specs."""
    preset = parse_preset(preset_text)
    specs = expand(preset)
    cache.register_sweep(
        preset.name, preset_text, preset.model_dump(mode="json"), specs, preset.train.steps, None
    )
    return preset, specs


def commit_fake(
    cache: Cache,
    preset: Preset,
    spec: RunSpec,
    status: str,
    steps_done: int,
    start: int = 0,
    owner: str = FAKE_OWNER,
    error: str | None = None,
    curve: Callable[[RunSpec, int, int], tuple[np.ndarray, int | None]] = synthetic_curve,
    measure: Callable[[RunSpec, np.ndarray], list[tuple[int, str, float | None]]] | None = None,
) -> None:
    """Commit the synthetic curve of one run over [start, steps_done) with the given status;
    `measure` gives diagnostics rows from the spec and the eval steps of the losses."""
    if not cache.claim([spec.run_id], owner, ttl=FOREVER):
        return
    losses, diverged = curve(spec, steps_done, start)
    if diverged is not None and diverged < steps_done:
        status, steps_done = "diverged", diverged + 1
        losses = losses[: max(0, steps_done - start)]
    if status == "failed":
        cache.commit(
            owner, [Progress(spec.run_id, steps_done, [], None, "running", None, None)], ttl=FOREVER
        )
        cache.fail(owner, error or "RuntimeError: synthetic failure")
        return
    chunks = reduce_losses(start, losses, preset.train.curve_cap)
    finite = losses[np.isfinite(losses)]
    update = Progress(
        run_id=spec.run_id,
        steps_done=steps_done,
        chunks=chunks,
        checkpoint=None,
        status=status,
        init_loss=float(losses[0]) if start == 0 and len(losses) else None,
        last_loss=float(finite[-1]) if finite.size else None,
        diverged_step=diverged if status == "diverged" else None,
        wall_seconds=0.01,
        evals=(evals := _fake_evals(start, losses)),
        diagnostics=measure(spec, np.array([e[0] for e in evals])) if measure else [],
    )
    cache.commit(owner, [update], ttl=FOREVER)


def _fake_evals(start: int, losses: np.ndarray) -> list[tuple[int, float | None, float | None]]:
    """Held-out values at the evaluation steps: the training loss with a 20% gap, and an
    accuracy that rises as the loss falls."""
    evals: list[tuple[int, float | None, float | None]] = []
    for offset, loss in enumerate(losses):
        if is_eval_step(start + offset) and np.isfinite(loss):
            value = float(loss) * 1.2
            evals.append((start + offset, value, 1.0 / (1.0 + value)))
    return evals


def synthetic_diagnostics(spec: RunSpec, steps: np.ndarray) -> list[tuple[int, str, float | None]]:
    """λ_max at the evaluation steps, and the seed-averaged held-out loss and accuracy.

    Step size × λ_max (S = N·η) relaxes from its start to 2.4·sqrt(η/η_div) over ~50 steps:
    it falls at γ < 1 and grows 2.5× at γ ≥ 1 (progressive sharpening), so cells near η_div sit
    at the edge 2 and smaller η below it. The smallest γ of the demo grids (below 0.1) has no
    diagnostics, like a run trained without them.
    """
    if spec.gamma < 0.1 - 1e-9:
        return []
    step_size = spec.network.width * spec.eta
    end = 2.4 * math.sqrt(spec.eta / eta_divergence(spec.gamma, spec.network.depth)) / step_size
    start = end * (2.5 if spec.gamma < 1 else 0.4)
    rows: list[tuple[int, str, float | None]] = []
    for step in steps.tolist():
        lam = end + (start - end) * math.exp(-step / 50.0)
        lam *= 1.0 + 0.02 * math.sin(step + spec.seed)
        loss = 1.1 / (1.0 + (step + 1.0) * spec.eta / spec.gamma / 40.0) + 0.01
        rows += [(step, "sharpness", lam), (step, "ens_test_loss", loss)]
        rows += [(step, "ens_test_accuracy", 1.0 / (1.0 + loss)), (step, "ens_seeds", 2.0)]
    return rows


def write_fake_sweep(
    cache: Cache,
    preset_text: str,
    state_of: StateOf | None = None,
    measure: Callable[[RunSpec, np.ndarray], list[tuple[int, str, float | None]]] | None = None,
) -> Preset:
    """Register a sweep and commit synthetic progress for each run (all done by default),
    with `measure`'s diagnostics if given."""
    preset, specs = register_fake(cache, preset_text)
    for index, spec in enumerate(specs):
        status, steps_done = (state_of or _all_done(preset))(spec, index)
        if status == "queued" or steps_done <= 0 and status != "failed":
            continue
        commit_fake(cache, preset, spec, status, steps_done, measure=measure)
    return preset


def power_law_curve(
    lazy: float, rich: float, scale: float = 0.1
) -> Callable[[RunSpec, int, int], tuple[np.ndarray, int | None]]:
    """Curves whose best η is η*(γ) = scale·γ^lazy (γ < 1), scale·γ^rich (γ ≥ 1), wobbled by
    up to ±0.05 decades per γ (so fits have an error): log loss is a parabola in log η."""

    def curve(spec: RunSpec, steps: int, start: int = 0) -> tuple[np.ndarray, int | None]:
        """Per-step losses for steps [start, steps); never diverges."""
        exponent = lazy if spec.gamma < 1 else rich
        log10_best = math.log10(scale) + exponent * math.log10(spec.gamma)
        log10_best += 0.05 * math.sin(7.0 * math.log10(spec.gamma) + 1.0)
        t = np.arange(start, steps, dtype=np.float64)
        away = (math.log10(spec.eta) - log10_best) / 0.5
        level = math.exp(min(away**2, 30.0)) * (1.0 + 0.03 * spec.seed)
        loss = level * (0.1 + 1.0 / (1.0 + t / 10.0))
        return loss.astype(np.float32), None

    return curve


def write_power_law_sweep(
    cache: Cache, preset_text: str, lazy: float, rich: float, scale: float = 0.1
) -> Preset:
    """Register a sweep whose runs all finish on power_law_curve(lazy, rich, scale) curves."""
    preset, specs = register_fake(cache, preset_text)
    curve = power_law_curve(lazy, rich, scale)
    for spec in specs:
        commit_fake(cache, preset, spec, "done", preset.train.steps, curve=curve)
    return preset


def _all_done(preset: Preset) -> StateOf:
    """Every run trained to the preset's steps."""
    return lambda spec, index: ("done", preset.train.steps)


def mixed_states(preset: Preset) -> StateOf:
    """A sweep caught mid-way: γ columns done left to right, one running, the last queued.

    The second-largest γ is running at half the steps, the largest is queued, and one run of
    the smallest γ has failed, so every state the dashboard draws is present.
    """
    gammas = preset.gamma.values()

    def state_of(spec: RunSpec, index: int) -> tuple[str, int]:
        """The fake status and steps of one run."""
        column = min(range(len(gammas)), key=lambda i: abs(math.log(gammas[i] / spec.gamma)))
        steps = preset.train.steps
        if column == len(gammas) - 1:
            return "queued", 0
        if column == len(gammas) - 2:
            return "running", steps // 2
        if column == 0 and index == 5:
            return "failed", steps // 4
        return "done", steps

    return state_of


def write_demo_cache(cache: Cache) -> None:
    """Two fake sweeps: 'demo' in progress (every state present) and 'finished' complete."""
    text = fake_preset_text("demo")
    preset = parse_preset(text)
    write_fake_sweep(cache, text, mixed_states(preset))
    write_fake_sweep(
        cache, fake_preset_text("finished", gammas=(0.01, 100.0, 1.0), seeds=1, steps=500, depth=3)
    )


def write_sharpness_demo(cache: Cache) -> None:
    """One fake sweep 'sharp' caught mid-way (every state present) with synthetic λ_max and
    seed-averaged held-out values (synthetic_diagnostics), for the sharpness map."""
    text = fake_preset_text("sharp", gammas=(0.01, 100.0, 1.0))
    write_fake_sweep(cache, text, mixed_states(parse_preset(text)), synthetic_diagnostics)


PINNED_TIME = 1_767_225_600.0
"""2026-01-01 00:00 UTC: the creation time screenshots show for fake sweeps."""


def pin_timestamps(cache: Cache, when: float = PINNED_TIME) -> None:
    """Give every sweep the same created/updated time, so screenshots do not depend on now."""
    with cache.transaction() as db:
        db.execute("UPDATE sweeps SET created=?, updated=?", (when, when))
