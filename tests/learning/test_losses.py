"""Loss functions (spiral.learning.losses): values and gradients against hand-derived expectations."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spiral.config import ConditioningMode, DiscriminatorConfig, DiscriminatorLoss as LossKind, LearnerConfig
from spiral.learning.losses import (
    A2CLoss,
    DiscriminatorLossTerms,
    OptimizerStep,
    a2c_vtrace_loss,
    baseline_loss,
    clip_gradients,
    complement_mask,
    discriminator_inputs,
    discriminator_loss,
    entropy_loss,
    gradient_penalty,
    make_discriminator_optimizer,
    make_policy_optimizer,
    nonsaturating_loss,
    policy_gradient_loss,
    step_if_finite,
    wgan_gp_loss,
)
from spiral.learning.vtrace import from_importance_weights

# ----------------------------------------------------------------------------- policy losses ---


def test_policy_gradient_loss_value_and_gradient():
    log_prob = torch.tensor([[-1.0, -2.0], [-0.5, -3.0]], requires_grad=True)
    advantages = torch.tensor([[2.0, -1.0], [0.5, 4.0]], requires_grad=True)
    loss = policy_gradient_loss(log_prob, advantages)
    # −Σ logπ·A = −(−2 + 2 − 0.25 − 12) = 12.25
    assert loss.item() == pytest.approx(12.25)
    loss.backward()
    torch.testing.assert_close(log_prob.grad, -advantages.detach())
    assert advantages.grad is None  # advantages are constants


def test_baseline_loss_value_and_gradient():
    values = torch.tensor([[1.0, 2.0], [0.0, -1.0]], requires_grad=True)
    targets = torch.tensor([[2.0, 2.0], [3.0, 1.0]], requires_grad=True)
    loss = baseline_loss(values, targets)
    # ½ Σ (vs − V)² = ½ (1 + 0 + 9 + 4) = 7
    assert loss.item() == pytest.approx(7.0)
    loss.backward()
    torch.testing.assert_close(values.grad, values.detach() - targets.detach())
    assert targets.grad is None


def test_entropy_loss_value_and_gradient():
    entropy = torch.tensor([[0.5, 1.5], [2.0, 0.0]], requires_grad=True)
    loss = entropy_loss(entropy)
    assert loss.item() == pytest.approx(-4.0)
    loss.backward()
    torch.testing.assert_close(entropy.grad, torch.full((2, 2), -1.0))


@pytest.mark.parametrize(
    "fn,args,message",
    [
        (policy_gradient_loss, (torch.zeros(3, 2), torch.zeros(3)), r"advantages must have the same shape as log_prob \[3, 2\], got \[3\]"),
        (baseline_loss, (torch.zeros(3, 2), torch.zeros(2, 3)), r"targets must have the same shape as values \[3, 2\], got \[2, 3\]"),
    ],
    ids=["pg", "baseline"],
)
def test_loss_shape_mismatch_raises(fn, args, message):
    with pytest.raises(ValueError, match=message):
        fn(*args)


def _a2c_inputs(steps=4, batch=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(
        target_log_prob=(-torch.rand(steps, batch, generator=g) * 3).requires_grad_(True),
        behaviour_log_prob=-torch.rand(steps, batch, generator=g) * 3,
        entropy=torch.rand(steps, batch, generator=g).requires_grad_(True),
        values=torch.randn(steps, batch, generator=g).requires_grad_(True),
        bootstrap_value=torch.randn(batch, generator=g),
        rewards=torch.randn(steps, batch, generator=g),
        discounts=torch.full((steps, batch), 0.99),
    )


@pytest.mark.parametrize("batch", [1, 3], ids=["batch1", "batch3"])
def test_a2c_vtrace_loss_combines_terms_with_config_coefficients(batch):
    cfg = LearnerConfig(entropy_coef=0.03, baseline_coef=0.7, clip_rho_threshold=1.0, clip_pg_rho_threshold=0.8)
    inputs = _a2c_inputs(batch=batch)
    out = a2c_vtrace_loss(**inputs, cfg=cfg)
    assert isinstance(out, A2CLoss)
    want = from_importance_weights(
        inputs["target_log_prob"].detach() - inputs["behaviour_log_prob"], inputs["discounts"], inputs["rewards"],
        inputs["values"].detach(), inputs["bootstrap_value"], 1.0, 0.8,
    )
    torch.testing.assert_close(out.vtrace.vs, want.vs)
    torch.testing.assert_close(out.policy, -(inputs["target_log_prob"] * want.pg_advantages).sum())
    torch.testing.assert_close(out.baseline, 0.5 * ((want.vs - inputs["values"]) ** 2).sum())
    torch.testing.assert_close(out.entropy, -inputs["entropy"].sum())
    torch.testing.assert_close(out.total, out.policy + 0.7 * out.baseline + 0.03 * out.entropy)

    out.total.backward()
    # Gradients: d/dlogπ = −A, d/dV = 0.7 (V − vs), d/dH = −0.03; V-trace targets are constants.
    torch.testing.assert_close(inputs["target_log_prob"].grad, -want.pg_advantages)
    torch.testing.assert_close(inputs["values"].grad, 0.7 * (inputs["values"].detach() - want.vs))
    torch.testing.assert_close(inputs["entropy"].grad, torch.full_like(inputs["entropy"], -0.03))


def test_a2c_vtrace_loss_names_mismatched_argument():
    inputs = _a2c_inputs()
    inputs["entropy"] = torch.zeros(4)
    with pytest.raises(ValueError, match=r"entropy must have the same shape as target_log_prob \[4, 3\]"):
        a2c_vtrace_loss(**inputs, cfg=LearnerConfig())


# ---------------------------------------------------------------------- discriminator losses ---


class LinearCritic(torch.nn.Module):
    """D(x) = w·x + b: its input gradient is w everywhere, so the GP is (‖w‖ − target)² exactly."""

    def __init__(self, shape, norm: float, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        w = torch.randn(shape, generator=g, dtype=torch.float64)
        self.w = torch.nn.Parameter(w / w.norm() * norm)
        self.b = torch.nn.Parameter(torch.tensor(0.3, dtype=torch.float64))

    def forward(self, x):
        return (x * self.w).flatten(1).sum(1) + self.b


def _images(batch=6, shape=(2, 4, 4), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand((batch,) + shape, generator=g, dtype=torch.float64), torch.rand((batch,) + shape, generator=g, dtype=torch.float64)


def test_gradient_penalty_is_zero_for_unit_norm_linear_critic():
    real, fake = _images()
    critic = LinearCritic(real.shape[1:], norm=1.0)
    assert gradient_penalty(critic, real, fake, target_norm=1.0).item() == pytest.approx(0.0, abs=1e-12)
    assert gradient_penalty(critic, real, fake).item() == pytest.approx(0.0, abs=1e-12)  # the default target is 1


@settings(max_examples=20, deadline=None)
@given(norm=st.floats(0.1, 5.0), target=st.floats(0.5, 2.0), seed=st.integers(0, 1000))
def test_gradient_penalty_equals_squared_norm_gap_for_linear_critic(norm, target, seed):
    real, fake = _images(seed=seed)
    critic = LinearCritic(real.shape[1:], norm=norm, seed=seed)
    assert gradient_penalty(critic, real, fake, target_norm=target).item() == pytest.approx((norm - target) ** 2, rel=1e-9, abs=1e-12)


def test_wgan_gp_loss_value_and_gradient_for_linear_critic():
    real, fake = _images()
    critic = LinearCritic(real.shape[1:], norm=2.0)
    out = wgan_gp_loss(critic, real, fake, gp_coef=10.0, gp_target_norm=1.0)
    assert isinstance(out, DiscriminatorLossTerms)
    w = critic.w.detach()
    d_real = (real * w).flatten(1).sum(1) + 0.3
    d_fake = (fake * w).flatten(1).sum(1) + 0.3
    torch.testing.assert_close(out.adversarial, d_fake.mean() - d_real.mean())
    torch.testing.assert_close(out.gradient_penalty, torch.tensor(1.0, dtype=torch.float64))  # (2 − 1)²
    torch.testing.assert_close(out.total, out.adversarial + 10.0)
    torch.testing.assert_close(out.d_real, d_real.mean())
    torch.testing.assert_close(out.d_fake, d_fake.mean())
    assert not out.d_real.requires_grad

    out.total.backward()
    # d/dw [E w·fake − E w·real] = E fake − E real;  d/dw λ(‖w‖ − 1)² = 2λ(‖w‖ − 1) w/‖w‖ = 10 w (‖w‖ = 2).
    want = (fake.mean(0) - real.mean(0)) + 2 * 10.0 * (2.0 - 1.0) * w / 2.0
    torch.testing.assert_close(critic.w.grad, want)
    assert critic.b.grad.item() == pytest.approx(0.0, abs=1e-12)  # the bias cancels in the Wasserstein term


def test_wgan_gp_loss_rejects_mismatched_batches():
    real, fake = _images()
    with pytest.raises(ValueError, match=r"fake must have the same shape as real \[6, 2, 4, 4\], got \[5, 2, 4, 4\]"):
        wgan_gp_loss(LinearCritic(real.shape[1:], 1.0), real, fake[:5], 10.0, 1.0)


def test_nonsaturating_loss_value_and_gradient():
    real, fake = _images()
    critic = LinearCritic(real.shape[1:], norm=1.0)
    out = nonsaturating_loss(critic, real, fake)
    w = critic.w.detach()
    d_real = (real * w).flatten(1).sum(1) + 0.3
    d_fake = (fake * w).flatten(1).sum(1) + 0.3
    # −log σ(D(real)) − log(1 − σ(D(fake)))
    want = -torch.log(torch.sigmoid(d_real)).mean() - torch.log(1 - torch.sigmoid(d_fake)).mean()
    torch.testing.assert_close(out.total, want)
    assert out.gradient_penalty.item() == 0.0
    out.total.backward()
    # d/db = E[σ(D(real)) − 1] + E[σ(D(fake))]
    want_b = (torch.sigmoid(d_real) - 1).mean() + torch.sigmoid(d_fake).mean()
    assert critic.b.grad.item() == pytest.approx(want_b.item(), rel=1e-9)


def test_nonsaturating_loss_is_two_log_two_at_zero_logits():
    real, fake = _images()
    out = nonsaturating_loss(lambda x: x.flatten(1).sum(1) * 0.0, real, fake)
    assert out.total.item() == pytest.approx(2 * math.log(2))


def test_discriminator_loss_dispatches_on_config():
    real, fake = _images()
    critic = LinearCritic(real.shape[1:], norm=3.0)
    wgan = discriminator_loss(critic, real, fake, DiscriminatorConfig(loss=LossKind.WGAN_GP, gp_coef=2.0))
    assert wgan.gradient_penalty.item() == pytest.approx(4.0)  # (3 − 1)²
    assert wgan.total.item() == pytest.approx(wgan.adversarial.item() + 8.0)
    sn = discriminator_loss(critic, real, fake, DiscriminatorConfig(loss=LossKind.SN_NONSATURATING))
    assert sn.gradient_penalty.item() == 0.0
    assert sn.total.item() > 0


# ---------------------------------------------------------------------- discriminator inputs ---


def test_inputs_unconditional_are_the_images():
    target, canvas = _images()
    assert discriminator_inputs(ConditioningMode.NONE, target, canvas, real=True) is target
    assert discriminator_inputs(ConditioningMode.NONE, target, canvas, real=False) is canvas


def test_inputs_pair():
    target, canvas = _images()
    real = discriminator_inputs(ConditioningMode.PAIR, target, None, real=True)
    fake = discriminator_inputs(ConditioningMode.PAIR, target, canvas, real=False)
    torch.testing.assert_close(real, torch.cat((target, target), 1))
    torch.testing.assert_close(fake, torch.cat((target, canvas), 1))


def test_complement_mask_covers_one_half_per_sample():
    m = complement_mask(200, 8, torch.Generator().manual_seed(0))
    assert m.shape == (200, 1, 8, 8)
    assert set(m.unique().tolist()) == {0.0, 1.0}
    assert bool((m.sum(dim=(1, 2, 3)) == 32).all())
    # All four halves are used (top, bottom, left, right).
    kinds = {tuple(x.flatten().tolist()) for x in m}
    assert len(kinds) == 4


def test_inputs_complement_split_target_and_hide_it_where_canvas_shows():
    target, canvas = _images(batch=16, shape=(3, 8, 8))
    fake = discriminator_inputs(ConditioningMode.COMPLEMENT, target, canvas, real=False, generator=torch.Generator().manual_seed(1))
    real = discriminator_inputs(ConditioningMode.COMPLEMENT, target, None, real=True, generator=torch.Generator().manual_seed(1))
    m = complement_mask(16, 8, torch.Generator().manual_seed(1)).to(target.dtype)
    torch.testing.assert_close(fake[:, :3], (1 - m) * target)
    torch.testing.assert_close(fake[:, 3:], m * canvas)
    torch.testing.assert_close(real[:, :3], (1 - m) * target)
    torch.testing.assert_close(real[:, 3:], m * target)
    torch.testing.assert_close(real[:, :3] + real[:, 3:], target)  # the two halves rebuild the target


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(mode=ConditioningMode.PAIR, canvas=None, real=False), r"canvas is required for fake discriminator inputs"),
        (dict(mode=ConditioningMode.PAIR, canvas=torch.zeros(6, 2, 4, 5), real=False), r"canvas must have the same shape as target \[6, 2, 4, 4\]"),
        (dict(mode="triple", canvas=None, real=True), r"'triple' is not a valid ConditioningMode"),
    ],
    ids=["missing-canvas", "canvas-shape", "bad-mode"],
)
def test_inputs_bad_arguments_raise(kwargs, message):
    target, _ = _images()
    with pytest.raises(ValueError, match=message):
        discriminator_inputs(target=target, **kwargs)


# ----------------------------------------------------------------------------- optimisation ---


def test_optimizers_follow_config():
    params = [torch.nn.Parameter(torch.zeros(3))]
    policy_opt = make_policy_optimizer(params, LearnerConfig(learning_rate=1e-3, adam_beta1=0.5, adam_beta2=0.99))
    assert policy_opt.param_groups[0]["lr"] == 1e-3
    assert policy_opt.param_groups[0]["betas"] == (0.5, 0.99)
    disc_opt = make_discriminator_optimizer(params, DiscriminatorConfig())
    assert disc_opt.param_groups[0]["lr"] == 1e-4
    assert disc_opt.param_groups[0]["betas"] == (0.5, 0.999)


def test_clip_gradients_returns_norm_before_clipping_and_clips():
    p = torch.nn.Parameter(torch.zeros(2))
    p.grad = torch.tensor([3.0, 4.0])
    assert clip_gradients([p], max_norm=1.0) == pytest.approx(5.0)
    assert p.grad.norm().item() == pytest.approx(1.0, rel=1e-5)
    with pytest.raises(ValueError, match=r"max_grad_norm must be > 0, got 0.0"):
        clip_gradients([p], 0.0)


# ------------------------------------------------------------- gradient penalty: interpolation ---


class QuadraticCritic(torch.nn.Module):
    """D(x) = ½ a ‖x‖²: ∇D(x) = a·x, so the penalty depends on *where* it is evaluated.

    Records every input, so a test can check the interpolation point x̂ itself.
    """

    def __init__(self, a: float = 1.5):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(a, dtype=torch.float64))
        self.inputs: list[torch.Tensor] = []

    def forward(self, x):
        self.inputs.append(x.detach().clone())
        return 0.5 * self.a * (x**2).flatten(1).sum(1)


def _interpolation_coefficients(x_hat, real, fake):
    """ε_i with x̂_i = ε_i real_i + (1 − ε_i) fake_i by least squares, and the residual off that segment."""
    direction = (real - fake).flatten(1)
    offset = (x_hat - fake).flatten(1)
    eps = (offset * direction).sum(1) / (direction * direction).sum(1)
    residual = (offset - eps[:, None] * direction).abs().max()
    return eps, residual


def test_gradient_penalty_is_taken_at_a_random_point_between_each_real_and_fake():
    real, fake = _images(batch=256, seed=3)
    critic = QuadraticCritic(a=1.5)
    penalty = gradient_penalty(critic, real, fake, target_norm=2.0, generator=torch.Generator().manual_seed(0))
    (x_hat,) = critic.inputs
    eps, residual = _interpolation_coefficients(x_hat, real, fake)
    assert residual.item() < 1e-12  # on the segment real_i — fake_i
    assert bool(((eps >= 0) & (eps <= 1)).all())
    assert eps.std().item() > 0.2 and abs(eps.mean().item() - 0.5) < 0.1  # one ε ~ U(0, 1) per sample
    # E[(‖a·x̂‖ − 2)²] at exactly those points.
    want = ((1.5 * x_hat.flatten(1).norm(dim=1) - 2.0) ** 2).mean()
    torch.testing.assert_close(penalty, want)
    # Differentiable in the critic's parameters: d/da = E[2 (a‖x̂‖ − 2) ‖x̂‖].
    penalty.backward()
    norms = x_hat.flatten(1).norm(dim=1)
    torch.testing.assert_close(critic.a.grad, (2 * (1.5 * norms - 2.0) * norms).mean())


def test_gradient_penalty_interpolation_is_reproducible_with_a_generator():
    real, fake = _images(seed=4)
    first = gradient_penalty(QuadraticCritic(), real, fake, generator=torch.Generator().manual_seed(7))
    again = gradient_penalty(QuadraticCritic(), real, fake, generator=torch.Generator().manual_seed(7))
    other = gradient_penalty(QuadraticCritic(), real, fake, generator=torch.Generator().manual_seed(8))
    assert first.item() == again.item() != other.item()


@pytest.mark.parametrize("gp_coef", [0.5, 1.0, 10.0])
def test_wgan_gp_loss_adds_the_penalty_at_the_interpolates(gp_coef):
    real, fake = _images(seed=5)
    critic = QuadraticCritic(a=0.8)
    out = wgan_gp_loss(critic, real, fake, gp_coef=gp_coef, gp_target_norm=1.0, generator=torch.Generator().manual_seed(2))
    d_real, d_fake, x_hat = critic.inputs  # the critic sees real, fake, then the interpolates
    eps, residual = _interpolation_coefficients(x_hat, real, fake)
    assert residual.item() < 1e-12
    want_penalty = ((0.8 * x_hat.flatten(1).norm(dim=1) - 1.0) ** 2).mean()
    torch.testing.assert_close(out.gradient_penalty, want_penalty)
    torch.testing.assert_close(out.total, out.adversarial + gp_coef * want_penalty)


def test_wgan_gp_loss_without_penalty_skips_the_interpolates():
    real, fake = _images()
    critic = QuadraticCritic()
    out = wgan_gp_loss(critic, real, fake, gp_coef=0.0, gp_target_norm=1.0)
    assert len(critic.inputs) == 2  # real and fake only
    assert out.gradient_penalty.item() == 0.0
    torch.testing.assert_close(out.total, out.adversarial)


def test_nonsaturating_loss_allows_batches_of_different_sizes_but_not_image_shapes():
    real, fake = _images(batch=6)
    critic = LinearCritic(real.shape[1:], norm=1.0)
    out = nonsaturating_loss(critic, real, fake[:4])
    w = critic.w.detach()
    d_fake = (fake[:4] * w).flatten(1).sum(1) + 0.3
    torch.testing.assert_close(out.d_fake, d_fake.mean())
    with pytest.raises(ValueError, match=r"real and fake must have the same \[C, H, W\], got \[6, 2, 4, 4\] and \[6, 2, 4, 3\]"):
        nonsaturating_loss(critic, real, fake[..., :3])


# ------------------------------------------------------------- discriminator inputs: edges ---


def test_complement_mask_without_generator_and_on_odd_canvases():
    # Default generator and device: still the four halves.
    m = complement_mask(64, 6)
    assert m.shape == (64, 1, 6, 6) and m.device.type == "cpu"
    assert {int(s) for s in m.sum(dim=(1, 2, 3))} == {18}
    # Odd side 7: the top/left "half" is the first ⌊7/2⌋ = 3 rows/columns, bottom/right the other 4.
    odd = complement_mask(200, 7, torch.Generator().manual_seed(0))
    rows = {tuple(int(v) for v in x[0].amax(dim=1)) for x in odd}  # which rows each mask touches
    cols = {tuple(int(v) for v in x[0].amax(dim=0)) for x in odd}
    full = (1,) * 7
    top, bottom = (1, 1, 1, 0, 0, 0, 0), (0, 0, 0, 1, 1, 1, 1)
    assert rows == {top, bottom, full} and cols == {top, bottom, full}
    assert {int(s) for s in odd.sum(dim=(1, 2, 3))} == {21, 28}


@pytest.mark.parametrize(
    "target,canvas,mode,message",
    [
        (torch.zeros(2, 4, 4), None, ConditioningMode.NONE, r"target must have shape \[B, C, H, W\], got \[2, 4, 4\]"),
        (torch.zeros(2, 1, 4, 6), torch.zeros(2, 1, 4, 6), ConditioningMode.COMPLEMENT, r"complement conditioning needs square images, got \[2, 1, 4, 6\]"),
    ],
    ids=["target-rank", "complement-not-square"],
)
def test_inputs_reject_bad_image_shapes(target, canvas, mode, message):
    with pytest.raises(ValueError, match=message):
        discriminator_inputs(mode, target, canvas, real=canvas is None)


# ------------------------------------------------------------------- step_if_finite: edges ---


def test_step_if_finite_without_max_norm_steps_unclipped():
    p = torch.nn.Parameter(torch.zeros(2))
    p.grad = torch.tensor([3.0, 4.0])
    step = step_if_finite(torch.optim.SGD([p], lr=1.0), [p], torch.tensor(1.0))
    assert step == OptimizerStep(grad_norm=5.0, skipped=False)
    torch.testing.assert_close(p.detach(), torch.tensor([-3.0, -4.0]))  # the full gradient: nothing clipped


def test_step_if_finite_drops_non_finite_gradients():
    p = torch.nn.Parameter(torch.zeros(2))
    p.grad = torch.tensor([1.0, math.inf])
    step = step_if_finite(torch.optim.SGD([p], lr=1.0), [p], torch.tensor(1.0), max_norm=1.0)
    assert step.skipped and step.grad_norm == math.inf
    assert p.grad is None  # dropped, not zeroed: nothing of the bad batch reaches the next step
    assert p.detach().tolist() == [0.0, 0.0]
