"""`run_loop` runs under `torch.inference_mode()` by default; `grad=True` gives gradients through
the loop (here: d(latent-2 hidden norm)/d(steering vector at latent 1), checked against finite
differences)."""

from __future__ import annotations

import pytest
import torch
from factories import make_converted

from nnsight_codi.interventions import AddVector
from nnsight_codi.loading import load_model
from nnsight_codi.tracing.loop import run_loop


class Modes:
    """Records, at each visit, whether inference mode and autograd are on, and the last layer's state."""

    def __init__(self, layer: int):
        self.layer, self.seen = layer, []

    def sites(self, step):
        return [f"layer{self.layer}"]

    def visit(self, site, value, step, sink):
        self.seen.append((torch.is_inference_mode_enabled(), torch.is_grad_enabled()))
        sink.append(("h", step, value[:, -1]))


@pytest.fixture(scope="module")
def codi(tmp_path_factory):
    return load_model(make_converted(tmp_path_factory.mktemp("m"), "gpt2", num_latents=2))


def test_inference_mode_by_default_grad_opt_in(codi):
    prompts = codi.encode(["Tom has 3 pens and buys 4 more . How many pens ?"])
    hook = Modes(codi.num_layers)
    _, records = run_loop(codi, prompts, [hook], max_new_tokens=2)
    assert hook.seen and all(inf and not g for inf, g in hook.seen)
    assert all(t.is_inference() for _, _, t in records)
    hook = Modes(codi.num_layers)
    _, records = run_loop(codi, prompts, [hook], max_new_tokens=2, grad=True)
    assert hook.seen and all(not inf and g for inf, g in hook.seen)
    assert not any(t.is_inference() for _, _, t in records)


def test_gradients_through_the_loop_match_finite_differences(codi):
    prompts = codi.encode(["Tom has 3 pens and buys 4 more . How many pens ?"])
    torch.manual_seed(0)
    direction = torch.randn(codi.hidden_size)

    def objective(coef: torch.Tensor, grad: bool) -> torch.Tensor:
        steer = AddVector(direction * coef, layer=1, steps=[1])
        hook = Modes(codi.num_layers)
        _, records = run_loop(codi, prompts, [steer, hook], max_new_tokens=1, grad=grad)
        return next(t for _, step, t in records if step == 2).norm()

    coef = torch.tensor(0.3, requires_grad=True)
    value = objective(coef, grad=True)
    (g,) = torch.autograd.grad(value, coef)
    eps = 1e-3
    with torch.no_grad():
        fd = (objective(torch.tensor(0.3 + eps), False) - objective(torch.tensor(0.3 - eps), False)) / (2 * eps)
    assert abs(float(g)) > 1e-4
    assert float(g) == pytest.approx(float(fd), rel=2e-2, abs=1e-4)


@pytest.mark.parametrize("fork", [True, False])
def test_run_branches_inference_mode_by_default_grad_opt_in(codi, fork):
    from nnsight_codi.tracing.branches import Branch, run_branches

    prompts = codi.encode(["Tom has 3 pens and buys 4 more . How many pens ?"])
    for grad in (False, True):
        hook = Modes(codi.num_layers)
        runs = run_branches(codi, prompts, [Branch([hook]), Branch([])], max_new_tokens=2, fork=fork, grad=grad)
        assert hook.seen and all(inf == (not grad) and g == grad for inf, g in hook.seen)
        assert all(t.is_inference() == (not grad) for _, _, t in runs[0][1])
