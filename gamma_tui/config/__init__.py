"""Presets: the pydantic schema of a sweep, its γ×η grid, and the RunSpecs it expands to.

A preset is a TOML file (see presets/). `load_preset` parses and validates it and turns every
problem into one `PresetError` whose message names the file, the key path and a fix, so the CLI
can print it and exit 2 instead of showing a traceback. `expand` turns a preset into one frozen
`RunSpec` per (γ, η, seed); a RunSpec's `run_id` is the hash of everything that changes the
result of training (never paths, devices or worker counts), which is what makes the cache
content-addressed.

The parts: `sections` (the tables of a preset), `preset` (the whole preset and its
cross-section checks), `grid` (RunSpecs, run ids, the η ∝ γ^p law), `loading` (TOML, overrides,
error messages) and `errors` (PresetError). Every name is importable from here.
"""

from gamma_tui.config.errors import PresetError
from gamma_tui.config.grid import (
    SPEC_VERSION,
    RunSpec,
    eta_scale,
    eta_values,
    expand,
    lazy_exponent,
    predicted_eta_exponent,
    resolve_dtype,
    run_spec,
    sweep_depth_label,
    sweep_optimizer,
)
from gamma_tui.config.loading import load_preset, parse_preset
from gamma_tui.config.preset import Preset, diagnostics_problem
from gamma_tui.config.sections import (
    DEPTH_LABELS,
    FILE_DATASETS,
    IMAGE_MODELS,
    KNOWN_SHAPES,
    MAX_GRID_RUNS,
    NTK_JACOBIAN_BYTES,
    SIGNIFICANT_DIGITS,
    AnalysisConfig,
    BackendConfig,
    CutoffConfig,
    DataConfig,
    DiagnosticsConfig,
    EtaRange,
    LogRange,
    NetworkConfig,
    RefineConfig,
    Strict,
    TrainConfig,
    depth_label,
    image_problem,
    round_grid_value,
)

__all__ = [
    "DEPTH_LABELS",
    "FILE_DATASETS",
    "IMAGE_MODELS",
    "KNOWN_SHAPES",
    "MAX_GRID_RUNS",
    "NTK_JACOBIAN_BYTES",
    "SIGNIFICANT_DIGITS",
    "SPEC_VERSION",
    "AnalysisConfig",
    "BackendConfig",
    "CutoffConfig",
    "DataConfig",
    "DiagnosticsConfig",
    "EtaRange",
    "LogRange",
    "NetworkConfig",
    "Preset",
    "PresetError",
    "RefineConfig",
    "RunSpec",
    "Strict",
    "TrainConfig",
    "depth_label",
    "diagnostics_problem",
    "eta_scale",
    "eta_values",
    "expand",
    "image_problem",
    "lazy_exponent",
    "load_preset",
    "parse_preset",
    "predicted_eta_exponent",
    "resolve_dtype",
    "round_grid_value",
    "run_spec",
    "sweep_depth_label",
    "sweep_optimizer",
]
