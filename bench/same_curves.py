"""Train presets with two checkouts of gamma-tui and compare every stored curve byte for byte.

    python bench/same_curves.py OLD_ROOT NEW_ROOT [PRESET ...] [--set KEY=VALUE ...]

Each preset (default presets/smoke.toml and presets/quickstart.toml) is trained by
`python -m gamma_tui run` once with PYTHONPATH=OLD_ROOT and once with PYTHONPATH=NEW_ROOT into
two fresh caches. Then every run's loss curve, status, diverged step and held-out evaluations
are compared exactly (the bytes of the float32 arrays). A refactor that claims "behaviour
unchanged" must print `identical` for every preset on the machine it was made on. Exits 1 on
the first difference.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def train(root: Path, preset: Path, cache: Path, overrides: list[str]) -> float:
    """Train `preset` into `cache` with the package at `root`; returns the wall seconds."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    command = [sys.executable, "-m", "gamma_tui", "run", str(preset), "--cache", str(cache)]
    command += ["-q", "-y"] + [arg for item in overrides for arg in ("--set", item)]
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, cwd=root)
    return time.perf_counter() - start


def snapshot(cache_dir: Path) -> dict[str, tuple[object, ...]]:
    """Everything training wrote per run: status, steps, divergence, curve and eval bytes."""
    from gamma_tui.cache import Cache

    with Cache(cache_dir) as cache:
        runs = cache.runs()
        ids = [r.run_id for r in runs]
        curves = cache.curves(ids)
        evals = cache.evals(ids)
    out: dict[str, tuple[object, ...]] = {}
    for run in runs:
        curve = curves.get(run.run_id)
        held = evals.get(run.run_id)
        out[run.run_id] = (
            run.status,
            run.steps_done,
            run.diverged_step,
            run.init_loss,
            run.last_loss,
            None if curve is None else (curve.steps.tobytes(), curve.loss.tobytes()),
            None
            if held is None
            else (held.steps.tobytes(), held.loss.tobytes(), held.accuracy.tobytes()),
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("presets", nargs="*", type=Path)
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    args = parser.parse_args()
    presets = args.presets or [Path("presets/smoke.toml"), Path("presets/quickstart.toml")]
    status = 0
    for preset in presets:
        preset = preset.resolve()
        with tempfile.TemporaryDirectory() as tmp:
            seconds = {}
            for name, root in (("old", args.old), ("new", args.new)):
                seconds[name] = train(root.resolve(), preset, Path(tmp) / name, args.overrides)
            old, new = snapshot(Path(tmp) / "old"), snapshot(Path(tmp) / "new")
        differ = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        verdict = "identical" if not differ else f"DIFFERENT in {len(differ)} runs: {differ[:3]}"
        print(
            f"{preset.name}: {len(old)} runs, old {seconds['old']:.1f} s, "
            f"new {seconds['new']:.1f} s: {verdict}",
            flush=True,
        )
        status |= bool(differ)
    return status


if __name__ == "__main__":
    sys.exit(main())
