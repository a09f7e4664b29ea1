"""Every model family and optimizer through the real trainer: the centered start, a member
trained in the grid equals the same run trained alone, the 1/γ output scale, held-out
evaluations, and Adam/SignSGD state surviving a resume."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from gamma_tui.cache import Cache
from gamma_tui.config import RunSpec, expand, parse_preset
from gamma_tui.engine.optimizers import EnsembleOptimizer
from gamma_tui.engine.parameterization import Architecture, EnsembleMLP, loss_and_grad
from gamma_tui.engine.shard import functional_mlp
from gamma_tui.engine.trainer import ShardTrainer, TrainerOptions
from gamma_tui.schedule import is_eval_step

CPU = TrainerOptions(torch.device("cpu"), checkpoint_every=8, commit_seconds=0.0)
CLASSES = 4

MODELS = {
    # kind: (network table, data needs images)
    "mlp": ('kind = "mlp"\nwidth = 8\ndepth = 3', False),
    "deep-linear": ('kind = "mlp"\nwidth = 8\ndepth = 3\nactivation = "linear"', False),
    "cnn": ('kind = "cnn"\nwidth = 2', True),
    "resnet18": ('kind = "resnet18"\nwidth = 4', True),
    "vit": ('kind = "vit"\nwidth = 8\ndepth = 1\nheads = 2\npatch = 4', True),
}


def images(tmp_path: Path) -> Path:
    """Random 3×12×12 uint8 images with CLASSES labels, as a generic .npz dataset."""
    rng = np.random.default_rng(0)
    file = tmp_path / "images.npz"
    if not file.exists():
        x = rng.integers(0, 256, (3000, 3, 12, 12), dtype=np.uint8)
        np.savez(file, X=x, y=rng.integers(0, CLASSES, 3000))
    return file


def preset_text(
    tmp_path: Path,
    model: str,
    loss: str = "mse",
    optimizer: str = "sgd",
    steps: int = 12,
    test_size: int = 64,
    eta: tuple[float, float] = (0.01, 0.1),
) -> str:
    """A 2 γ × 2 η × 2 seed float64 sweep of `model` on images or on a class teacher."""
    network, needs_images = MODELS[model]
    if needs_images:
        data = f'kind = "npz"\npath = "{images(tmp_path)}"'
    else:
        data = f'kind = "teacher_classes"\ninput_dim = 12\noutputs = {CLASSES}'
    return (
        f"seeds = 2\n[network]\n{network}\n[data]\n{data}\ntest_size = {test_size}\n"
        f'[train]\nbatch_size = 8\nsteps = {steps}\nloss = "{loss}"\noptimizer = "{optimizer}"\n'
        'dtype = "float64"\ncheckpoint_every = 8\n'
        "[gamma]\nmin = 0.1\nmax = 10\nper_decade = 0.5\n"
        f"[eta]\nmin = {eta[0]}\nmax = {eta[1]}\nper_decade = 1\n"
    )


def train(cache: Cache, text: str, specs: list[RunSpec] | None = None) -> list[RunSpec]:
    """Register `specs` (default: the preset's grid) and train them in-process, one shard."""
    specs = specs or expand(parse_preset(text))
    cache.register_sweep("s", text, {}, specs, parse_preset(text).train.steps)
    ShardTrainer(cache, "t", CPU).train([s.run_id for s in specs])
    return specs


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("loss", ["mse", "xent"])
def test_every_run_starts_at_the_centered_loss(tmp_path: Path, model: str, loss: str) -> None:
    """f == 0 at init: MSE on one-hot targets starts at E[y²] = 1/C, cross-entropy at ln C,
    on the training batch and on the held-out set alike."""
    with Cache(tmp_path / "runs") as cache:
        specs = train(cache, preset_text(tmp_path, model, loss, steps=3))
        curves = cache.curves([s.run_id for s in specs])
        evals = cache.evals([s.run_id for s in specs])
    expected = 1 / CLASSES if loss == "mse" else math.log(CLASSES)
    assert len(curves) == len(specs) == 8
    for spec in specs:
        assert curves[spec.run_id].loss[0] == pytest.approx(expected, rel=1e-6)
        assert evals[spec.run_id].steps[0] == 0
        assert evals[spec.run_id].loss[0] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("model", "optimizer"),
    [("mlp", "adam"), ("mlp", "signsgd"), ("cnn", "sgd"), ("resnet18", "sgd"), ("vit", "adam")],
)
def test_member_of_the_grid_matches_the_run_trained_alone(
    tmp_path: Path, model: str, optimizer: str
) -> None:
    """Each member has its own parameters, optimizer state and (ResNet) BatchNorm statistics."""
    text = preset_text(tmp_path, model, optimizer=optimizer, eta=(0.001, 0.01))
    with Cache(tmp_path / "grid") as cache:
        specs = train(cache, text)
        grid = cache.curves([s.run_id for s in specs])
        grid_evals = cache.evals([s.run_id for s in specs])
    spec = specs[5]
    with Cache(tmp_path / "alone") as cache:
        train(cache, text, [spec])
        alone = cache.curves([spec.run_id])[spec.run_id].loss
        alone_evals = cache.evals([spec.run_id])[spec.run_id]
    assert len(alone) == 12 and np.ptp(alone) > 0
    np.testing.assert_allclose(alone, grid[spec.run_id].loss, rtol=1e-5)
    np.testing.assert_allclose(alone_evals.loss, grid_evals[spec.run_id].loss, rtol=1e-9)


@pytest.mark.parametrize(
    ("model", "optimizer", "lazy", "eta"),
    [
        ("mlp", "sgd", 2, 1e-4),
        ("mlp", "adam", 1, 1e-5),
        ("cnn", "sgd", 2, 1e-4),
        ("resnet18", "sgd", 2, 1e-6),  # BatchNorm layers make its lazy steps larger
        ("vit", "signsgd", 1, 1e-5),
    ],
)
def test_output_scales_as_one_over_gamma(
    tmp_path: Path, model: str, optimizer: str, lazy: int, eta: float
) -> None:
    """The function moves by η/γ^p in one lazy step (p = 2 for SGD, 1 for scale-free steps):
    doubling γ and multiplying η by 2^p leaves the next loss unchanged to first order, while
    doubling γ alone changes it."""
    text = preset_text(tmp_path, model, optimizer=optimizer, steps=2)
    base = expand(parse_preset(text))[0]
    pairs = [(0.01, eta), (0.02, eta * 2**lazy), (0.02, eta)]
    specs = [base.model_copy(update={"gamma": g, "eta": e}) for g, e in pairs]
    with Cache(tmp_path / "runs") as cache:
        train(cache, text, specs)
        curves = cache.curves([s.run_id for s in specs])
    first, matched, halved = (curves[s.run_id].loss[1] for s in specs)
    assert abs(first - matched) < 0.02 * abs(first - halved)
    assert abs(first - halved) > 1e-6


def test_general_path_mlp_equals_the_hand_written_fast_path() -> None:
    """The vmap + autograd MLP and the hand-written backward take the same SGD steps."""
    arch = Architecture((12, 8, 8, 3), bias=True, activation="relu", width=8)
    general = functional_mlp(arch)
    params = [torch.stack(group) for group in zip(arch.init(0), arch.init(1), strict=True)]
    fast = EnsembleMLP(arch, [p.clone() for p in params])
    slow = general.ensemble([p.clone() for p in params])
    gamma, rate = torch.tensor([0.5, 2.0]), torch.tensor([0.8, 0.3])
    frozen = torch.zeros(2, 5, 3, dtype=torch.float64)  # centering is not what is tested
    for step in range(4):
        x = torch.randn(5, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(step))
        y = torch.randn(5, 3, dtype=torch.float64)
        for model in (fast, slow):
            f_mu, ctx = model.forward(x)
            with torch.no_grad():
                _, grad = loss_and_grad(f_mu, frozen, gamma.double(), rate.double(), y, "mse")
            model.sgd_step(x, ctx, grad)
    for a, b in zip(fast.params, slow.params, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_adam_and_signsgd_steps_match_their_definitions() -> None:
    """EnsembleOptimizer against torch.optim.Adam member by member, and SignSGD by formula."""
    lr = torch.tensor([1e-2, 3e-3], dtype=torch.float64)
    params = [torch.randn(2, 4, 3, dtype=torch.float64), torch.randn(2, 5, dtype=torch.float64)]
    ours = [p.clone() for p in params]
    adam = EnsembleOptimizer.restore("adam", ours, [None, None])
    reference = [[p[i].clone().requires_grad_() for p in params] for i in range(2)]
    optims = [torch.optim.Adam(reference[i], lr=float(lr[i])) for i in range(2)]
    for step in range(5):
        grads = [torch.randn_like(p) for p in params]
        adam.step(ours, grads, lr, step)
        for i in range(2):
            for tensor, grad in zip(reference[i], grads, strict=True):
                tensor.grad = grad[i].clone()
            optims[i].step()
    for index, tensor in enumerate(ours):
        for i in range(2):
            torch.testing.assert_close(tensor[i], reference[i][index].detach())
    sign = [p.clone() for p in params]
    grads = [torch.randn_like(p) for p in params]
    EnsembleOptimizer.restore("signsgd", sign, [None, None]).step(sign, grads, lr, 0)
    torch.testing.assert_close(sign[0], params[0] - lr[:, None, None] * grads[0].sign())


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_resume_continues_bitwise_with_optimizer_state_and_evals(
    tmp_path: Path, optimizer: str
) -> None:
    """12 steps straight equal 5 steps, then extending to 12 from the checkpoint."""
    text = preset_text(tmp_path, "mlp", optimizer=optimizer, eta=(0.001, 0.01))
    with Cache(tmp_path / "straight") as cache:
        specs = train(cache, text)
        straight = cache.curves([s.run_id for s in specs])
        straight_evals = cache.evals([s.run_id for s in specs])
    short = text.replace("steps = 12", "steps = 5").replace("every = 8", "every = 5")
    with Cache(tmp_path / "resumed") as cache:
        train(cache, short)
        train(cache, text)
        resumed = cache.curves([s.run_id for s in specs])
        resumed_evals = cache.evals([s.run_id for s in specs])
    for spec in specs:
        np.testing.assert_array_equal(resumed[spec.run_id].loss, straight[spec.run_id].loss)
        got, want = resumed_evals[spec.run_id], straight_evals[spec.run_id]
        assert got.steps.tolist() == want.steps.tolist() == [0, 1, 2, 5, 10, 12]
        np.testing.assert_array_equal(got.loss, want.loss)
        np.testing.assert_array_equal(got.accuracy, want.accuracy)


def test_regression_evals_have_no_accuracy_and_stop_at_divergence(tmp_path: Path) -> None:
    text = (
        '[data]\nkind = "single_index"\ninput_dim = 8\ndegree = 2\ntest_size = 50\n'
        "[train]\nbatch_size = 4\nsteps = 60\n[network]\nwidth = 8\n"
        "[gamma]\nmin = 1\nmax = 1\n[eta]\nmin = 0.01\nmax = 1000\nper_decade = 0.5\n"
    )
    with Cache(tmp_path / "runs") as cache:
        specs = train(cache, text)
        runs = {r.run_id: r for r in cache.runs(run_ids=[s.run_id for s in specs])}
        evals = cache.evals([s.run_id for s in specs])
    statuses = {r.status for r in runs.values()}
    assert statuses == {"done", "diverged"}
    for run_id, run in runs.items():
        assert np.isnan(evals[run_id].accuracy).all()
        if run.status == "diverged":
            assert evals[run_id].steps.max() <= run.diverged_step
        else:
            assert evals[run_id].steps.tolist() == [0, 1, 2, 5, 10, 20, 50, 60]


def test_eval_steps_are_one_two_five_per_decade() -> None:
    assert [s for s in range(1001) if is_eval_step(s)] == [
        0,
        1,
        2,
        5,
        10,
        20,
        50,
        100,
        200,
        500,
        1000,
    ]


@pytest.mark.parametrize("model", MODELS)
def test_cost_estimate_counts_the_forward_multiply_adds(tmp_path: Path, model: str) -> None:
    """gamma_tui.costs against torch's FLOP counter on one member's real forward pass."""
    from torch.utils.flop_counter import FlopCounterMode

    from gamma_tui.costs import forward_macs
    from gamma_tui.engine.data import make_stream
    from gamma_tui.engine.shard import model_family

    preset = parse_preset(preset_text(tmp_path, model))
    flatten = preset.network.kind not in ("cnn", "resnet18", "vit")
    stream = make_stream(preset.data, 8, "mse", torch.float64, torch.device("cpu"), flatten=flatten)
    arch = model_family(preset.network, stream)
    pairs = zip(arch.init(0), arch.init(1), strict=True)
    ensemble = arch.ensemble([torch.stack(pair) for pair in pairs])
    batch = stream.batch(0).x
    with FlopCounterMode(display=False) as counter:
        ensemble.predict(batch)
    found = preset.data.sample_shape()
    assert found is not None
    estimate = forward_macs(preset.network, *found)
    # two members (one would take the MLP's padded path), 8 samples, 2 FLOPs per multiply-add
    assert counter.get_total_flops() / 2 / 8 / 2 == pytest.approx(estimate, rel=0.02)


@pytest.mark.slow  # torch.compile takes seconds to compile on CPU
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_compiled_step_trains_like_the_eager_one(tmp_path: Path, optimizer: str) -> None:
    """train.compile: the compiled step gives the eager curves up to kernel rounding."""
    from torch._dynamo.utils import counters

    text = preset_text(tmp_path, "mlp", optimizer=optimizer, eta=(0.001, 0.01))
    curves = {}
    for compiled in (False, True):
        options = TrainerOptions(torch.device("cpu"), commit_seconds=0.0, compile_step=compiled)
        with Cache(tmp_path / f"runs-{compiled}") as cache:
            specs = expand(parse_preset(text))
            cache.register_sweep("s", text, {}, specs, 12)
            before = counters["stats"]["unique_graphs"]
            ShardTrainer(cache, "t", options).train([s.run_id for s in specs])
            graphs = counters["stats"]["unique_graphs"] - before
            curves[compiled] = cache.curves([s.run_id for s in specs])
        assert (graphs > 0) == compiled
    for run_id, eager in curves[False].items():
        np.testing.assert_allclose(curves[True][run_id].loss, eager.loss, rtol=1e-4)


def test_runs_that_blow_up_between_evaluations_are_diverged_not_failed(tmp_path: Path) -> None:
    """A held-out loss that is inf or NaN at the divergence step is stored as missing."""
    text = (
        "[data]\nkind = 'teacher_classes'\ninput_dim = 8\noutputs = 3\ntest_size = 20\n"
        "[train]\nbatch_size = 4\nsteps = 30\n[network]\nwidth = 16\n"
        "[gamma]\nmin = 1\nmax = 1\n[eta]\nmin = 1e3\nmax = 1e30\nper_decade = 0.2\n"
    )
    with Cache(tmp_path / "runs") as cache:
        specs = train(cache, text)
        runs = cache.runs(run_ids=[s.run_id for s in specs])
        evals = cache.evals([s.run_id for s in specs])
    assert {r.status for r in runs} == {"diverged"}
    assert any(np.isnan(e.loss).any() for e in evals.values())  # the blow-up, kept as missing


def test_batchnorm_evaluation_never_sees_a_one_sample_chunk(tmp_path: Path) -> None:
    """9 held-out samples at batch 2 are cut 5 + 4 (not 8 + 1, which BatchNorm refuses)."""
    text = preset_text(tmp_path, "resnet18", steps=2, test_size=9).replace(
        "batch_size = 8", "batch_size = 2"
    )
    with Cache(tmp_path / "runs") as cache:
        specs = train(cache, text)
        evals = cache.evals([s.run_id for s in specs])
    assert all(e.steps.tolist() == [0, 1, 2] for e in evals.values()) and len(evals) == 8


def test_vit_memory_plan_counts_attention_maps(tmp_path: Path) -> None:
    from gamma_tui.engine.data import make_stream
    from gamma_tui.engine.shard import model_family

    preset = parse_preset(preset_text(tmp_path, "vit"))
    stream = make_stream(preset.data, 8, "mse", torch.float32, torch.device("cpu"), flatten=False)
    two = model_family(preset.network, stream)
    four = model_family(preset.network.model_copy(update={"heads": 4}), stream)
    tokens = (12 // 4) ** 2
    difference = four.activation_elements(1) - two.activation_elements(1)
    assert difference == 1 * (4 - 2) * tokens * tokens * 2  # depth x heads x T² x (logits, weights)
