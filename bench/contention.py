"""A sweep's wall time with the machine to itself and with one busy process, per thread policy.

    python bench/contention.py [--preset presets/quickstart.toml] [--set train.steps=400]
                               [--rounds 1]

Trains the preset (`python -m gamma_tui run`, one local worker, a fresh cache each time)
under three thread policies, each without and with a busy loop (`while True: pass`) pinned to
the last CPU this process may use:

- all:      GAMMA_TUI_THREADS=all, one torch thread per CPU (the old default)
- passive:  the same with OMP_WAIT_POLICY=PASSIVE (idle OpenMP threads sleep, never spin)
- auto:     GAMMA_TUI_THREADS=auto (the default): one thread per CPU that other processes
            leave free, sampled from /proc/stat when the workers start

and prints the seconds side by side with the load average (1 min) at the start of each
training. Policies alternate within a round, so drift on a shared machine hits them alike.

Measured on a 2-core AMD EPYC (torch 2.13.0+cpu), `--preset presets/smoke.toml --set
train.steps=200`, one round, while four other sessions used the same two cores (load average
13.6-15, so "quiet" was not quiet): all 52.2 s quiet / 66.2 s busy, passive 29.7 / 32.9 s,
auto 23.7 / 33.4 s.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

POLICIES = {
    "all": {"GAMMA_TUI_THREADS": "all"},
    "passive": {"GAMMA_TUI_THREADS": "all", "OMP_WAIT_POLICY": "PASSIVE"},
    "auto": {"GAMMA_TUI_THREADS": "auto"},
}


def busy_loop() -> subprocess.Popen[bytes]:
    """A process spinning on the last CPU this process may use."""
    cpu = max(os.sched_getaffinity(0))
    return subprocess.Popen(
        [sys.executable, "-c", "while True: pass"],
        preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
    )


def train(preset: Path, overrides: list[str], policy: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, load average at the start) of one training of `preset`."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | policy
    with tempfile.TemporaryDirectory(prefix="bench-contention-") as cache:
        command = [sys.executable, "-m", "gamma_tui", "run", str(preset), "--cache", cache]
        command += ["-q", "-y"] + [arg for item in overrides for arg in ("--set", item)]
        load = os.getloadavg()[0]
        start = time.perf_counter()
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - start, load


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", type=Path, default=Path("presets/quickstart.toml"))
    parser.add_argument("--set", action="append", dest="overrides", default=None)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    overrides = args.overrides if args.overrides is not None else ["train.steps=400"]
    print(f"preset {args.preset} {' '.join(overrides)}; CPUs {len(os.sched_getaffinity(0))}")
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for _ in range(args.rounds):
        for condition in ("quiet", "busy"):
            spinner = busy_loop() if condition == "busy" else None
            try:
                time.sleep(0.5 if spinner else 0.0)
                for name, policy in POLICIES.items():
                    seconds, load = train(args.preset, overrides, policy)
                    results.setdefault((name, condition), []).append((seconds, load))
                    print(f"  {name:8s} {condition}: {seconds:6.1f} s  (load {load:.1f})")
            finally:
                if spinner is not None:
                    spinner.kill()
                    spinner.wait()
    print(f"{'policy':8s}  {'quiet s':>8s}  {'busy s':>8s}  busy/quiet")
    for name in POLICIES:
        quiet = min(results[name, "quiet"])[0]
        busy = min(results[name, "busy"])[0]
        print(f"{name:8s}  {quiet:8.1f}  {busy:8.1f}  {busy / quiet:9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
