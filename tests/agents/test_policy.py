"""The SPIRAL policy (spiral.agents.policy) on hand-built action specs."""

from __future__ import annotations

import pytest
import torch

from spiral.agents import AgentState, PolicyOutput, SpiralPolicy, resolve_agent_sizes
from spiral.agents.heads import grid_coordinates, upsampling_plan
from spiral.config import AgentConfig, AgentPreset
from spiral.envs.base import Observation
from spiral.envs.spec import ActionSpec, Component, ComponentSpec

CANVAS = 32
GRID = 8


def paint_spec(rgb: bool = False, grid: int = GRID) -> ActionSpec:
    comps = [
        ComponentSpec(Component.FLAG, 2),
        ComponentSpec(Component.END, grid * grid, grid),
        ComponentSpec(Component.CONTROL, grid * grid, grid),
        ComponentSpec(Component.SIZE, 6),
        ComponentSpec(Component.PRESSURE, 10),
    ]
    if rgb:
        comps += [ComponentSpec(c, 20) for c in (Component.RED, Component.GREEN, Component.BLUE)]
    return ActionSpec(tuple(comps))


def mujoco_spec() -> ActionSpec:
    return ActionSpec(
        (
            ComponentSpec(Component.SHAPE, 4),
            ComponentSpec(Component.POSITION, 64, 8),
            ComponentSpec(Component.SIZE, 3),
            ComponentSpec(Component.RED, 4),
            ComponentSpec(Component.GREEN, 4),
            ComponentSpec(Component.BLUE, 4),
            ComponentSpec(Component.ROTATION, 4),
        )
    )


SPECS = {"grayscale": (paint_spec(), 1), "rgb": (paint_spec(rgb=True), 3), "mujoco": (mujoco_spec(), 3)}


def make_policy(spec_name="grayscale", conditional=True, seed=0, **cfg):
    torch.manual_seed(seed)
    spec, channels = SPECS[spec_name]
    return SpiralPolicy(spec, CANVAS, channels, conditional, AgentConfig(**cfg))


def make_obs(policy: SpiralPolicy, batch: int, step: int = 1, seed: int = 0, mask: float = 1.0) -> Observation:
    g = torch.Generator().manual_seed(seed)
    k = len(policy.action_spec)
    return Observation(
        canvas=torch.rand(batch, policy.num_channels, CANVAS, CANVAS, generator=g),
        step=torch.full((batch,), step, dtype=torch.long),
        episode_length=torch.full((batch,), 20, dtype=torch.long),
        action_mask=torch.full((batch, k), mask),
    )


def inputs(policy: SpiralPolicy, batch: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed + 100)
    if policy.conditional:
        return torch.rand(batch, policy.num_channels, CANVAS, CANVAS, generator=g), None
    return None, torch.randn(batch, policy.sizes.noise_size, generator=g)


def random_state(policy: SpiralPolicy, batch: int, seed: int = 0) -> AgentState:
    g = torch.Generator().manual_seed(seed + 200)
    h = torch.randn(batch, policy.sizes.hidden_size, generator=g)
    c = torch.randn(batch, policy.sizes.hidden_size, generator=g)
    prev = torch.stack([torch.randint(0, n, (batch,), generator=g) for n in policy.action_spec.sizes], dim=1)
    return AgentState(h, c, prev)


@pytest.mark.parametrize("spec_name", list(SPECS), ids=list(SPECS))
@pytest.mark.parametrize("conditional", [True, False], ids=["conditional", "unconditional"])
def test_step_and_unroll_shapes(spec_name, conditional):
    policy = make_policy(spec_name, conditional)
    batch, steps, k = 3, 4, len(policy.action_spec)
    target, noise = inputs(policy, batch)
    out, state = policy(make_obs(policy, batch), target, noise, policy.initial_state(batch))
    assert isinstance(out, PolicyOutput) and isinstance(state, AgentState)
    assert out.actions.shape == (batch, k) and out.actions.dtype == torch.long
    policy.action_spec.validate(out.actions)  # every component within its range
    for field in (out.log_prob, out.entropy, out.baseline):
        assert field.shape == (batch,)
    assert state.h.shape == (batch, policy.sizes.hidden_size)
    torch.testing.assert_close(state.prev_action, out.actions)

    obs = make_obs(policy, steps * batch)
    obs_seq = Observation(*(f.view(steps, batch, *f.shape[1:]) for f in obs))
    actions = torch.stack([out.actions] * steps)
    unrolled = policy.unroll(obs_seq, target, noise, policy.initial_state(batch), actions)
    assert unrolled.actions.shape == (steps, batch, k)
    for field in (unrolled.log_prob, unrolled.entropy, unrolled.baseline):
        assert field.shape == (steps, batch)


def test_paper_sized_canvas_and_grid_batch_one():
    spec = paint_spec(grid=32)
    policy = SpiralPolicy(spec, 64, 1, True, AgentConfig(preset=AgentPreset.SMALL))
    obs = Observation(torch.rand(1, 1, 64, 64), torch.zeros(1, dtype=torch.long), torch.full((1,), 20), torch.zeros(1, 5))
    out, _ = policy(obs, torch.rand(1, 1, 64, 64), None, policy.initial_state(1))
    assert out.actions.shape == (1, 5)
    assert int(out.actions[0, 1]) < 1024


@pytest.mark.parametrize("spec_name", ["grayscale", "mujoco"])
def test_teacher_forced_log_prob_equals_sampled(spec_name):
    policy = make_policy(spec_name)
    batch = 5
    obs, (target, noise), state = make_obs(policy, batch), inputs(policy, batch), random_state(policy, batch)
    sampled, next_sampled = policy(obs, target, noise, state)
    forced, next_forced = policy(obs, target, noise, state, actions=sampled.actions)
    torch.testing.assert_close(forced.actions, sampled.actions)
    torch.testing.assert_close(forced.log_prob, sampled.log_prob)
    torch.testing.assert_close(forced.entropy, sampled.entropy)
    torch.testing.assert_close(forced.baseline, sampled.baseline)
    torch.testing.assert_close(next_forced.h, next_sampled.h)


def test_log_prob_is_a_normalised_distribution_over_small_spec():
    # Tiny spec: flag(2) × size(3) = 6 joint actions; Σ π(a) must be 1 with the autoregressive head.
    spec = ActionSpec((ComponentSpec(Component.FLAG, 2), ComponentSpec(Component.SIZE, 3)))
    policy = SpiralPolicy(spec, CANVAS, 1, True, AgentConfig())
    all_actions = torch.tensor([[f, s] for f in range(2) for s in range(3)])
    obs = make_obs(policy, 6)
    obs = obs._replace(canvas=obs.canvas[:1].expand(6, -1, -1, -1))
    target = torch.rand(1, 1, CANVAS, CANVAS).expand(6, -1, -1, -1)
    out, _ = policy(obs, target, None, policy.initial_state(6), actions=all_actions)
    assert out.log_prob.exp().sum().item() == pytest.approx(1.0, abs=1e-5)
    assert bool((out.entropy > 0).all())


def test_unroll_equals_stepwise_forward_with_resets():
    policy = make_policy("rgb")
    steps, batch = 5, 3
    target, noise = inputs(policy, batch)
    state0 = random_state(policy, batch)
    first = torch.zeros(steps, batch, dtype=torch.bool)
    first[0, 0] = True  # column 0 starts a new episode at the unroll's first step
    first[3, 1] = True  # column 1 starts a new episode mid-unroll
    obs_list, outs, actions = [], [], []
    state = state0
    for t in range(steps):
        obs = make_obs(policy, batch, step=2, seed=t)
        out, state = policy(obs, target, noise, state, first=first[t])
        obs_list.append(obs)
        outs.append(out)
        actions.append(out.actions)
    obs_seq = Observation(*(torch.stack(f) for f in zip(*obs_list)))
    unrolled = policy.unroll(obs_seq, target, noise, state0, torch.stack(actions), first)
    torch.testing.assert_close(unrolled.log_prob, torch.stack([o.log_prob for o in outs]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(unrolled.entropy, torch.stack([o.entropy for o in outs]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(unrolled.baseline, torch.stack([o.baseline for o in outs]), rtol=1e-5, atol=1e-5)


def test_first_resets_lstm_state_and_previous_action():
    policy = make_policy()
    batch = 4
    obs, (target, _) = make_obs(policy, batch, step=3), inputs(policy, batch)
    actions = random_state(policy, batch, seed=9).prev_action
    fresh, _ = policy(obs, target, None, policy.initial_state(batch), actions, first=torch.ones(batch, dtype=torch.bool))
    reset, _ = policy(obs, target, None, random_state(policy, batch), actions, first=torch.ones(batch, dtype=torch.bool))
    carried, _ = policy(obs, target, None, random_state(policy, batch), actions, first=torch.zeros(batch, dtype=torch.bool))
    torch.testing.assert_close(reset.log_prob, fresh.log_prob)
    torch.testing.assert_close(reset.baseline, fresh.baseline)
    assert not torch.allclose(carried.baseline, fresh.baseline)
    # Default: obs.step == 0 marks the first step.
    auto, _ = policy(obs._replace(step=torch.zeros(batch, dtype=torch.long)), target, None, random_state(policy, batch), actions)
    torch.testing.assert_close(auto.baseline, fresh.baseline)


def test_masked_out_previous_components_change_nothing():
    policy = make_policy()
    batch, k = 4, len(policy.action_spec)
    obs, (target, _) = make_obs(policy, batch), inputs(policy, batch)
    mask = torch.zeros(batch, k)
    mask[:, policy.action_spec.index("flag")] = 1.0
    mask[:, policy.action_spec.index("end")] = 1.0  # a move: only flag and end mattered
    obs = obs._replace(action_mask=mask)
    state = random_state(policy, batch)
    actions = random_state(policy, batch, seed=5).prev_action
    base, _ = policy(obs, target, None, state, actions)

    changed = state.prev_action.clone()
    control, size = policy.action_spec.index("control"), policy.action_spec.index("size")
    changed[:, control] = (changed[:, control] + 7) % GRID**2
    changed[:, size] = (changed[:, size] + 1) % 6
    masked, _ = policy(obs, target, None, state._replace(prev_action=changed), actions)
    torch.testing.assert_close(masked.log_prob, base.log_prob)
    torch.testing.assert_close(masked.baseline, base.baseline)

    unmasked, _ = policy(obs._replace(action_mask=torch.ones(batch, k)), target, None, state._replace(prev_action=changed), actions)
    assert not torch.allclose(unmasked.baseline, base.baseline)


def test_inputs_matter_target_and_noise():
    cond = make_policy()
    obs, state = make_obs(cond, 2), cond.initial_state(2)
    a, _ = cond(obs, torch.zeros(2, 1, CANVAS, CANVAS), None, state)
    b, _ = cond(obs, torch.ones(2, 1, CANVAS, CANVAS), None, state)
    assert not torch.allclose(a.baseline, b.baseline)
    uncond = make_policy(conditional=False)
    a, _ = uncond(obs, None, torch.zeros(2, 10), state)
    b, _ = uncond(obs, None, torch.ones(2, 10), state)
    assert not torch.allclose(a.baseline, b.baseline)


def test_greedy_is_deterministic_argmax_and_sampling_varies():
    policy = make_policy()
    batch = 16
    obs, (target, _), state = make_obs(policy, batch), inputs(policy, batch), random_state(policy, batch)
    g1, _ = policy(obs, target, None, state, sample=False)
    g2, _ = policy(obs, target, None, state, sample=False)
    torch.testing.assert_close(g1.actions, g2.actions)
    s1, _ = policy(obs, target, None, state, generator=torch.Generator().manual_seed(1))
    s2, _ = policy(obs, target, None, state, generator=torch.Generator().manual_seed(2))
    s1b, _ = policy(obs, target, None, state, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(s1.actions, s1b.actions)  # reproducible with a generator
    assert not torch.equal(s1.actions, s2.actions)
    assert bool((g1.entropy > 0).all())


def test_greedy_first_component_is_the_mode():
    policy = make_policy()
    batch = 8
    obs, (target, _), state = make_obs(policy, batch), inputs(policy, batch), random_state(policy, batch)
    greedy, _ = policy(obs, target, None, state, sample=False)
    features, skip = policy._torso(obs.canvas, target, None, state.prev_action, obs.action_mask)
    z = policy._core(features[None], state.h, state.c, torch.zeros(1, batch, dtype=torch.bool))[0][0]
    torch.testing.assert_close(greedy.actions[:, 0], policy.decoders[0](z, skip).argmax(-1))


def test_every_parameter_gets_a_gradient_from_unroll():
    policy = make_policy("rgb", conditional=False)
    steps, batch = 3, 2
    obs = make_obs(policy, steps * batch)
    obs_seq = Observation(*(f.view(steps, batch, *f.shape[1:]) for f in obs))
    _, noise = inputs(policy, batch)
    actions = torch.stack([random_state(policy, batch, seed=t).prev_action for t in range(steps)])
    out = policy.unroll(obs_seq, None, noise, random_state(policy, batch), actions)
    (out.log_prob.sum() + out.entropy.sum() + out.baseline.sum()).backward()
    missing = [n for n, p in policy.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert missing == []


def test_parameter_counts_of_presets():
    spec = paint_spec(grid=32)
    counts = {
        preset: sum(p.numel() for p in SpiralPolicy(spec, 64, 1, True, AgentConfig(preset=preset)).parameters())
        for preset in AgentPreset
    }
    assert 1_000_000 <= counts[AgentPreset.PAPER] <= 2_200_000
    assert counts[AgentPreset.SMALL] * 3 < counts[AgentPreset.PAPER]


def test_resolve_agent_sizes_presets_and_overrides():
    paper = resolve_agent_sizes(AgentConfig(preset=AgentPreset.PAPER))
    assert (paper.conv_channels, paper.num_residual_blocks, paper.hidden_size, paper.embed_size) == (32, 8, 256, 16)
    cfg = AgentConfig(preset=AgentPreset.SMALL, hidden_size=64, noise_size=7)
    small = resolve_agent_sizes(cfg)
    assert small.hidden_size == 64 and small.noise_size == 7
    assert small.conv_channels == resolve_agent_sizes(AgentConfig()).conv_channels
    assert cfg.hidden_size == 64 and cfg.conv_channels is None  # the config is not filled in


def test_grid_helpers():
    coords = grid_coordinates(torch.tensor([0, 7, 56, 63]), 8)
    torch.testing.assert_close(coords, torch.tensor([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]]))
    assert upsampling_plan(32) == (4, 3)
    assert upsampling_plan(12) == (6, 1)
    assert upsampling_plan(6) == (6, 0)
    assert upsampling_plan(5) == (5, 0)


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda p, o, s: p(o, None, None, s), r"target is required: this policy is conditional"),
        (lambda p, o, s: p(o, torch.zeros(2, 1, CANVAS, CANVAS), torch.zeros(2, 10), s), r"noise must be None: this policy is conditional"),
        (lambda p, o, s: p(o._replace(canvas=torch.zeros(2, 3, CANVAS, CANVAS)), torch.zeros(2, 1, CANVAS, CANVAS), None, s),
         r"obs.canvas must have shape \[2, 1, 32, 32\], got \[2, 3, 32, 32\]"),
        (lambda p, o, s: p(o, torch.zeros(2, 1, 16, 16), None, s), r"target must have shape \[2, 1, 32, 32\], got \[2, 1, 16, 16\]"),
        (lambda p, o, s: p(o, torch.zeros(2, 1, CANVAS, CANVAS), None, s[:2]), r"state must be an AgentState \(h, c, prev_action\)"),
        (lambda p, o, s: p(o, torch.zeros(2, 1, CANVAS, CANVAS), None, p.initial_state(3)), r"state.h must have shape \[2, 128\], got \[3, 128\]"),
        (lambda p, o, s: p(o, torch.zeros(2, 1, CANVAS, CANVAS), None, s, torch.full((2, 5), 99)),
         r"action component 'flag' of batch row 0 is 99; valid range is 0..1"),
        (lambda p, o, s: p.initial_state(0), r"batch_size must be ≥ 1, got 0"),
    ],
    ids=["no-target", "noise-for-conditional", "canvas-shape", "target-shape", "bad-state", "state-batch", "actions-range", "batch0"],
)
def test_bad_inputs_raise_with_message(call, message):
    policy = make_policy()
    with pytest.raises(ValueError, match=message):
        call(policy, make_obs(policy, 2), policy.initial_state(2))


def test_unconditional_needs_noise():
    policy = make_policy(conditional=False)
    with pytest.raises(ValueError, match=r"noise of shape \[2, 10\] is required"):
        policy(make_obs(policy, 2), None, None, policy.initial_state(2))


def test_unroll_rejects_bad_actions_shape():
    policy = make_policy()
    obs = make_obs(policy, 6)
    obs_seq = Observation(*(f.view(3, 2, *f.shape[1:]) for f in obs))
    with pytest.raises(ValueError, match=r"actions must have shape \[3, 2, 5\], got \[3, 2, 4\]"):
        policy.unroll(obs_seq, torch.zeros(2, 1, CANVAS, CANVAS), None, policy.initial_state(2), torch.zeros(3, 2, 4, dtype=torch.long))


def test_policy_learns_a_rewarded_component_with_the_vtrace_loss():
    """End to end through the real pieces: sample (actor), unroll (learner), V-trace A2C loss, Adam.

    One-step episodes rewarded 1 for painting (flag = 1): P(paint) must rise from ~0.5.
    """
    from spiral.config import LearnerConfig
    from spiral.learning.losses import a2c_vtrace_loss, clip_gradients, make_policy_optimizer

    policy = make_policy(seed=3)
    cfg = LearnerConfig(learning_rate=3e-3, entropy_coef=0.0)
    optimizer = make_policy_optimizer(policy.parameters(), cfg)
    batch, flag = 32, policy.action_spec.index("flag")
    obs, (target, _) = make_obs(policy, batch, step=0, mask=0.0), inputs(policy, batch)
    obs_seq = Observation(*(f[None] for f in obs))

    def paint_probability() -> float:
        with torch.no_grad():
            z = policy._core(policy._torso(obs.canvas, target, None, torch.zeros_like(obs.action_mask).long(), obs.action_mask)[0][None],
                             *policy.initial_state(batch)[:2], torch.ones(1, batch, dtype=torch.bool))[0][0]
            return float(torch.softmax(policy.decoders[flag](z), -1)[:, 1].mean())

    before = paint_probability()
    for _ in range(25):
        with torch.no_grad():
            behaviour, _ = policy(obs, target, None, policy.initial_state(batch))
        rewards = behaviour.actions[:, flag].float()[None]
        out = policy.unroll(obs_seq, target, None, policy.initial_state(batch), behaviour.actions[None])
        loss = a2c_vtrace_loss(out.log_prob, behaviour.log_prob[None], out.entropy, out.baseline,
                               torch.zeros(batch), rewards, torch.zeros(1, batch), cfg)
        optimizer.zero_grad()
        loss.total.backward()
        clip_gradients(policy.parameters(), cfg.max_grad_norm)
        optimizer.step()
    after = paint_probability()
    assert 0.3 < before < 0.7
    assert after > 0.9, (before, after)


def test_built_policies_keep_channels_last_convolutions_and_the_wire_and_checkpoints_keep_their_values(tmp_path) -> None:
    """build_policy stores conv weights channels-last (oneDNN's fast layout on CPU, issue #15);
    a contiguous copy of the same policy, the wire codec and a checkpoint all see equal values and
    equal outputs (only the summation order of the convolutions may differ)."""
    from spiral.agents.build import build_policy
    from spiral.config import load_preset
    from spiral.envs.factory import make_env
    from spiral.learning.checkpoint import load_checkpoint, save_checkpoint
    from spiral.services.tensor_codec import decode_state_dict, encode_state_dict

    cfg = load_preset("default", {"env.canvas_size": 32, "env.grid_size": 8})
    env = make_env(cfg.env)
    policy = build_policy(cfg, env)
    convs = [m for m in policy.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) and not m.weight.is_contiguous() for m in convs if m.kernel_size != (1, 1))
    wire = decode_state_dict(encode_state_dict(policy.state_dict()))
    save_checkpoint(tmp_path, {"config": cfg.model_dump(mode="json"), "policy": policy.state_dict()})
    stored = load_checkpoint(tmp_path / "latest.pt")["policy"]
    plain = build_policy(cfg, env).to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    plain.load_state_dict(wire)
    for name, value in policy.state_dict().items():
        assert torch.equal(wire[name], value) and torch.equal(stored[name], value), name
    obs = env.reset(4)
    out_fast, _ = policy(obs, obs.canvas, None, policy.initial_state(4), sample=False)
    out_plain, _ = plain(obs, obs.canvas, None, plain.initial_state(4), sample=False)
    assert torch.equal(out_fast.actions, out_plain.actions)
    torch.testing.assert_close(out_fast.log_prob, out_plain.log_prob, rtol=1e-4, atol=1e-5)
