"""The SPIRAL policy network (Ganin et al., 2018; SPIRAL-NOTES §2).

One time step, for a batch of ``B`` episodes::

    canvas (+ target) + 2 coordinate channels ──conv 5×5/C──(+ MLP(prev action · mask))──(+ MLP(noise))
      → ReLU → stride-2 4×4 convs down to 8×8 → conv 3×3 → residual stack → linear → LSTM core
      → autoregressive head (flag, end, control, …: sample, embed, fold back into z, next)
      → value head (linear on the LSTM output)

The policy needs the *previous action* as input, but an :class:`~spiral.envs.base.Observation`
carries only its mask. So the recurrent state is an :class:`AgentState` ``(h, c, prev_action)``:
whoever keeps the LSTM state for an unroll (the actor) automatically keeps the previous action too,
and the learner replays the unroll from the same initial state.

Callers: the actor (``forward`` with ``actions=None``: sample, or ``sample=False`` for greedy
evaluation) and the policy learner (``unroll`` with the behaviour actions: teacher-forced target
log-probabilities, entropies and baselines for V-trace). Not thread-safe (it is an ``nn.Module``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from spiral.agents.heads import ComponentEmbedding, FoldBack, make_decoder
from spiral.agents.presets import AgentSizes, resolve_agent_sizes
from spiral.config import AgentConfig
from spiral.envs.base import Observation
from spiral.envs.spec import ActionSpec


class AgentState(NamedTuple):
    """Recurrent state carried between steps; a tuple, so it can be stored/stacked field by field.

    h, c:         float ``[B, hidden]`` LSTM state.
    prev_action:  int64 ``[B, K]`` the action taken at the previous step (zeros before the first).
    """

    h: torch.Tensor
    c: torch.Tensor
    prev_action: torch.Tensor


class PolicyOutput(NamedTuple):
    """Result of one step (``[B]`` fields) or of an unroll (``[T, B]`` fields).

    actions:   int64 ``[B, K]`` / ``[T, B, K]``, columns in ``ActionSpec.names`` order.
    log_prob:  log π(actions), summed over the K components.
    entropy:   sum over components of each component's entropy, given the components before it
               (an unbiased one-sample estimate of the joint entropy's conditional chain), each
               divided by its maximum ``log n_k``. **We decide**: normalised, a 2-way ``flag`` weighs
               as much in the entropy bonus as a 1024-way ``end``; raw, the bonus barely touches the
               flag, which then collapses to "never paint" long before the agent learns where to paint.
    baseline:  V(state), the value head.
    component_log_prob: ``[B, K]`` / ``[T, B, K]`` log-probability of each component given the
               ones before it (``log_prob`` is their sum). Teacher forcing needs them apart: a
               move's ``control`` is irrelevant, so imitation losses mask it out.
    """

    actions: torch.Tensor
    log_prob: torch.Tensor
    entropy: torch.Tensor
    baseline: torch.Tensor
    component_log_prob: torch.Tensor


def _check_shape(name: str, tensor: torch.Tensor, expected: tuple[int, ...]) -> None:
    """Raises ValueError naming ``name`` when ``tensor`` does not have shape ``expected``."""
    if tuple(tensor.shape) != tuple(expected):
        raise ValueError(f"{name} must have shape {list(expected)}, got {list(tensor.shape)}")


class ResidualBlock(nn.Module):
    """``x + conv(relu(conv(relu(x))))`` with 3×3 convolutions (IMPALA-style pre-activation)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(torch.relu(self.conv1(torch.relu(x))))


class SpiralPolicy(nn.Module):
    """The SPIRAL agent: conv encoder, LSTM core, autoregressive action head, value head.

    Args:
        action_spec: the environment's components, decoded in this order.
        canvas_size: canvas side H = W in pixels.
        num_channels: canvas channels C (1 grayscale, 3 RGB).
        conditional: True → the target image is channel-concatenated to the canvas;
            False → a noise vector of ``cfg.noise_size`` is fed through its own MLP.
        cfg: sizes (``preset`` fills the ones left unset, see :mod:`spiral.agents.presets`).

    Raises:
        ValueError: an empty action spec, non-positive sizes, or a bad spatial component.
    """

    coords: torch.Tensor  # buffer [1, 2, H, W] (registered in __init__): declared for the type checker

    def __init__(
        self, action_spec: ActionSpec, canvas_size: int, num_channels: int, conditional: bool, cfg: AgentConfig
    ) -> None:
        super().__init__()
        if len(action_spec) == 0:
            raise ValueError("action_spec must have at least one component, got none")
        if canvas_size < 4:
            raise ValueError(f"canvas_size must be ≥ 4, got {canvas_size}")
        if num_channels < 1:
            raise ValueError(f"num_channels must be ≥ 1, got {num_channels}")
        self.action_spec = action_spec
        self.canvas_size = canvas_size
        self.num_channels = num_channels
        self.conditional = conditional
        self.sizes: AgentSizes = resolve_agent_sizes(cfg)
        s = self.sizes
        width = s.conv_channels

        # Coordinate channels: let convolutions know where they are (translation-equivariance
        # would otherwise make absolute stroke positions hard to decode).
        axis = torch.linspace(-1.0, 1.0, canvas_size)
        yy, xx = torch.meshgrid(axis, axis, indexing="ij")
        self.register_buffer("coords", torch.stack((yy, xx))[None], persistent=False)

        in_channels = num_channels * (2 if conditional else 1) + 2
        self.first_conv = nn.Conv2d(in_channels, width, kernel_size=5, stride=s.first_stride, padding=2)

        # Previous action: each component embedded, masked by whether it mattered, concatenated.
        self.prev_embeddings = nn.ModuleList(ComponentEmbedding(c, s.embed_size) for c in action_spec.components)
        self.prev_action_mlp = nn.Sequential(
            nn.Linear(len(action_spec) * s.embed_size, s.hidden_size), nn.ReLU(), nn.Linear(s.hidden_size, width)
        )
        self.noise_mlp: nn.Module | None = None
        if not conditional:
            self.noise_mlp = nn.Sequential(
                nn.Linear(s.noise_size, s.hidden_size), nn.ReLU(), nn.Linear(s.hidden_size, width)
            )

        down: list[nn.Module] = []
        size = (canvas_size - 1) // s.first_stride + 1
        while size > 8 and size % 2 == 0:
            down += [nn.Conv2d(width, width, kernel_size=4, stride=2, padding=1), nn.ReLU()]
            size //= 2
        self.downsample = nn.Sequential(*down)
        self.encoded_size = size
        self.mid_conv = nn.Conv2d(width, width, kernel_size=3, padding=1)
        self.residual = nn.Sequential(*(ResidualBlock(width) for _ in range(s.num_residual_blocks)))
        self.project = nn.Linear(width * size * size, s.hidden_size)
        self.core = nn.LSTMCell(s.hidden_size, s.hidden_size)

        self.decoders = nn.ModuleList(
            make_decoder(c, s.hidden_size, s.decoder_channels) for c in action_spec.components
        )
        # The last component needs no fold-back: nothing is decoded after it.
        self.head_embeddings = nn.ModuleList(
            ComponentEmbedding(c, s.embed_size) for c in action_spec.components[:-1]
        )
        self.folds = nn.ModuleList(FoldBack(s.hidden_size, s.embed_size) for _ in action_spec.components[:-1])
        self.value = nn.Linear(s.hidden_size, 1)
        # 1 / log(n_k): normalises each component's entropy to [0, 1] (see PolicyOutput.entropy).
        self._entropy_scale = [1.0 / math.log(c.size) if c.size > 1 else 0.0 for c in action_spec.components]
        # Image features straight to the spatial decoders (see AgentSizes.spatial_skip).
        self.skip: nn.Module | None = None
        grids = {c.grid for c in action_spec.components if c.spatial}
        if s.spatial_skip and grids:
            self.skip = nn.Conv2d(width, s.decoder_channels, kernel_size=1)

    # ------------------------------------------------------------------------------ state ---

    def initial_state(self, batch_size: int) -> AgentState:
        """Zero LSTM state and a zero previous action, on the parameters' device.

        Raises:
            ValueError: ``batch_size`` < 1.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
        device = self.value.weight.device
        zeros = torch.zeros(batch_size, self.sizes.hidden_size, device=device)
        prev = torch.zeros(batch_size, len(self.action_spec), dtype=torch.long, device=device)
        return AgentState(zeros, zeros.clone(), prev)

    # ------------------------------------------------------------------------------ parts ---

    def _torso(
        self,
        canvas: torch.Tensor,
        target: torch.Tensor | None,
        noise: torch.Tensor | None,
        prev_action: torch.Tensor,
        action_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Everything before the LSTM, for any flat batch ``N``: → ``[N, hidden]`` and the optional
        ``[N, decoder_channels, grid, grid]`` skip features for the spatial decoders."""
        n = canvas.shape[0]
        planes = [canvas] + ([target] if target is not None else []) + [self.coords.expand(n, -1, -1, -1)]
        x = self.first_conv(torch.cat(planes, dim=1))

        embedded = [
            embed(prev_action[:, k]) * action_mask[:, k : k + 1] for k, embed in enumerate(self.prev_embeddings)
        ]
        bias = self.prev_action_mlp(torch.cat(embedded, dim=1))
        if self.noise_mlp is not None and noise is not None:
            bias = bias + self.noise_mlp(noise)
        x = torch.relu(x + bias[:, :, None, None])
        skip = None
        if self.skip is not None:
            grid = next(c.grid for c in self.action_spec.components if c.spatial)
            skip = self.skip(nn.functional.adaptive_avg_pool2d(x, grid))

        x = self.downsample(x)
        x = self.residual(self.mid_conv(x))
        return torch.relu(self.project(torch.relu(x).flatten(1))), skip

    def _core(
        self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, first: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """LSTM over ``x [T, B, hidden]``; the state is zeroed before every step where ``first``.

        TorchBeast's convention: the core state is multiplied by ``notdone`` at each step.
        """
        outputs = []
        notfirst = (~first).to(x.dtype).unsqueeze(-1)
        for t in range(x.shape[0]):
            h, c = self.core(x[t], (h * notfirst[t], c * notfirst[t]))
            outputs.append(h)
        return torch.stack(outputs), h, c

    def _head(
        self,
        z: torch.Tensor,
        actions: torch.Tensor | None,
        sample: bool,
        generator: torch.Generator | None,
        skip: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Autoregressive decoding for a flat batch ``z [N, hidden]`` → (actions, per-component
        log-probs ``[N, K]``, entropy)."""
        chosen: list[torch.Tensor] = []
        log_probs_k: list[torch.Tensor] = []
        entropy: torch.Tensor | float = 0.0
        last = len(self.decoders) - 1
        for k, decoder in enumerate(self.decoders):
            log_probs = torch.log_softmax(decoder(z, skip), dim=-1)
            probs = log_probs.exp()
            if actions is not None:
                a = actions[:, k]
            elif sample:
                a = torch.multinomial(probs.detach(), 1, generator=generator).squeeze(1)
            else:
                a = log_probs.argmax(dim=-1)
            log_probs_k.append(log_probs.gather(1, a[:, None]).squeeze(1))
            entropy = entropy - (probs * log_probs).sum(dim=-1) * self._entropy_scale[k]
            chosen.append(a)
            if k < last:
                z = self.folds[k](z, self.head_embeddings[k](a))
        if not isinstance(entropy, torch.Tensor):  # unreachable: __init__ refuses an empty action spec
            raise ValueError("the action spec has no component to decode")
        return torch.stack(chosen, dim=1), torch.stack(log_probs_k, dim=1), entropy

    # ---------------------------------------------------------------------------- checking ---

    def _check_inputs(
        self, where: str, canvas: torch.Tensor, action_mask: torch.Tensor, target: torch.Tensor | None,
        noise: torch.Tensor | None, batch: tuple[int, ...],
    ) -> None:
        """Raises ValueError naming the first input whose shape does not fit."""
        image = (self.num_channels, self.canvas_size, self.canvas_size)
        _check_shape(f"{where}canvas", canvas, batch + image)
        _check_shape(f"{where}action_mask", action_mask, batch + (len(self.action_spec),))
        if self.conditional:
            if target is None:
                raise ValueError("target is required: this policy is conditional (it reconstructs a target image)")
            if tuple(target.shape) not in (batch + image, batch[-1:] + image):
                raise ValueError(f"target must have shape {list(batch[-1:] + image)}, got {list(target.shape)}")
        elif target is not None:
            raise ValueError("target must be None: this policy is unconditional (it generates from noise)")
        if not self.conditional:
            if noise is None:
                raise ValueError(f"noise of shape {[batch[-1], self.sizes.noise_size]} is required: this policy is unconditional")
            if tuple(noise.shape) not in (batch + (self.sizes.noise_size,), batch[-1:] + (self.sizes.noise_size,)):
                raise ValueError(f"noise must have shape {[batch[-1], self.sizes.noise_size]}, got {list(noise.shape)}")
        elif noise is not None:
            raise ValueError("noise must be None: this policy is conditional (noise feeds unconditional generation only)")

    def _check_state(self, state: AgentState, batch_size: int) -> AgentState:
        if not isinstance(state, tuple) or len(state) != 3:
            raise ValueError("state must be an AgentState (h, c, prev_action) from initial_state()")
        state = AgentState(*state)
        _check_shape("state.h", state.h, (batch_size, self.sizes.hidden_size))
        _check_shape("state.c", state.c, (batch_size, self.sizes.hidden_size))
        _check_shape("state.prev_action", state.prev_action, (batch_size, len(self.action_spec)))
        return state

    # ----------------------------------------------------------------------------- public ---

    def forward(
        self,
        obs: Observation,
        target: torch.Tensor | None,
        noise: torch.Tensor | None,
        state: AgentState,
        actions: torch.Tensor | None = None,
        *,
        first: torch.Tensor | None = None,
        sample: bool = True,
        generator: torch.Generator | None = None,
    ) -> tuple[PolicyOutput, AgentState]:
        """One time step for a batch of B episodes.

        Actors call it under ``torch.no_grad()`` (or ``inference_mode``): sampling needs no graph.

        Args:
            obs: canvas ``[B, C, H, W]`` in [0, 1] and ``action_mask [B, K]`` of the previous action.
            target: ``[B, C, H, W]`` for a conditional policy, else None.
            noise: ``[B, noise_size]`` for an unconditional policy, else None.
            state: from :meth:`initial_state` or the previous step.
            actions: None → choose actions (sample, or argmax when ``sample=False``);
                ``LongTensor[B, K]`` → teacher-force them and score them.
            first: bool ``[B]``, True where this is an episode's first step (state is reset);
                defaults to ``obs.step == 0``.
            sample: False → greedy (argmax per component, deterministic) for evaluation.
            generator: random generator for sampling (reproducible actors).

        Returns:
            ``PolicyOutput`` with ``[B]`` fields and the next :class:`AgentState`
            (whose ``prev_action`` is this step's action).

        Raises:
            ValueError: a missing/extra target or noise, or any input with the wrong shape
                (the message names the input and the expected shape), or out-of-range actions.
        """
        batch = obs.canvas.shape[0]
        self._check_inputs("obs.", obs.canvas, obs.action_mask, target, noise, (batch,))
        state = self._check_state(state, batch)
        if actions is not None:
            self.action_spec.validate(actions)
            _check_shape("actions", actions, (batch, len(self.action_spec)))
        if first is None:
            first = obs.step == 0
        _check_shape("first", first, (batch,))
        first = first.to(torch.bool)

        prev_action = state.prev_action * (~first).long()[:, None]
        x, skip = self._torso(obs.canvas, target, noise, prev_action, obs.action_mask)
        core_out, h, c = self._core(x[None], state.h, state.c, first[None])
        z = core_out[0]
        chosen, component_log_prob, entropy = self._head(z, actions, sample, generator, skip)
        baseline = self.value(z).squeeze(-1)
        output = PolicyOutput(chosen, component_log_prob.sum(-1), entropy, baseline, component_log_prob)
        return output, AgentState(h, c, chosen.detach())

    def unroll(
        self,
        obs_seq: Observation,
        target: torch.Tensor | None,
        noise: torch.Tensor | None,
        state: AgentState,
        actions: torch.Tensor,
        first: torch.Tensor | None = None,
    ) -> PolicyOutput:
        """Score a whole unroll of behaviour actions with the current (target) policy.

        The encoder and the head run batched over all ``T·B`` steps (only the LSTM loops over
        time), because the previous action of every step is known: ``actions[t − 1]``, or
        ``state.prev_action`` for ``t = 0``.

        Args:
            obs_seq: an Observation whose fields are ``[T, B, ...]`` (the observation each
                action was chosen from).
            target: ``[B, C, H, W]`` (fixed per episode) or ``[T, B, C, H, W]``; None when unconditional.
            noise: ``[B, noise_size]`` or ``[T, B, noise_size]``; None when conditional.
            state: the :class:`AgentState` the actor had before step 0 of this unroll.
            actions: ``LongTensor[T, B, K]`` behaviour actions.
            first: bool ``[T, B]``, True at each episode's first step; defaults to ``obs_seq.step == 0``.

        Returns:
            ``PolicyOutput`` with ``actions [T, B, K]`` and ``[T, B]`` log_prob, entropy, baseline.

        Raises:
            ValueError: any input with the wrong shape (names it and the expected shape) or
                out-of-range actions.
        """
        if obs_seq.canvas.dim() != 5:
            raise ValueError(f"obs_seq.canvas must have shape [T, B, C, H, W], got {list(obs_seq.canvas.shape)}")
        steps, batch = obs_seq.canvas.shape[:2]
        self._check_inputs("obs_seq.", obs_seq.canvas, obs_seq.action_mask, target, noise, (steps, batch))
        state = self._check_state(state, batch)
        num_components = len(self.action_spec)
        _check_shape("actions", actions, (steps, batch, num_components))
        self.action_spec.validate(actions.reshape(-1, num_components))
        if first is None:
            first = obs_seq.step == 0
        _check_shape("first", first, (steps, batch))
        first = first.to(torch.bool)

        prev_action = torch.cat((state.prev_action[None], actions[:-1]), dim=0) * (~first).long()[..., None]
        flat = steps * batch

        def flatten(x: torch.Tensor | None, per_step_dims: int) -> torch.Tensor | None:
            # [B, ...] inputs are fixed for the unroll: repeat them over T.
            if x is None:
                return None
            if x.dim() == per_step_dims:
                x = x[None].expand(steps, *x.shape)
            return x.reshape(flat, *x.shape[2:])

        x, skip = self._torso(
            obs_seq.canvas.reshape(flat, *obs_seq.canvas.shape[2:]),
            flatten(target, 4),
            flatten(noise, 2),
            prev_action.reshape(flat, num_components),
            obs_seq.action_mask.reshape(flat, num_components),
        )
        core_out, _, _ = self._core(x.view(steps, batch, -1), state.h, state.c, first)
        z = core_out.reshape(flat, -1)
        _, component_log_prob, entropy = self._head(z, actions.reshape(flat, num_components), True, None, skip)
        baseline = self.value(z).squeeze(-1)
        component_log_prob = component_log_prob.view(steps, batch, num_components)
        return PolicyOutput(
            actions, component_log_prob.sum(-1), entropy.view(steps, batch), baseline.view(steps, batch), component_log_prob
        )

    @torch.no_grad()
    def candidates(
        self,
        obs: Observation,
        target: torch.Tensor | None,
        noise: torch.Tensor | None,
        state: AgentState,
        num_candidates: int,
        *,
        include_greedy: bool = True,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``num_candidates`` actions per episode for a search to choose from (one time step).

        The encoder and the LSTM run once per episode; only the autoregressive head runs once per
        candidate, on copies of the same head state — so K candidates cost far less than K steps.

        Returns:
            ``(actions [B, K, A], log_prob [B, K], core_state)`` where ``core_state`` is the
            ``(h, c)`` after this step: whichever candidate the search keeps, the next
            :class:`AgentState` is ``AgentState(h, c, kept_action)``. With ``include_greedy`` the
            first candidate is the greedy action (argmax per component), so a search never does
            worse than the greedy policy by its own score.

        Raises:
            ValueError: ``num_candidates`` < 1, or inputs of the wrong shape.
        """
        if num_candidates < 1:
            raise ValueError(f"num_candidates must be ≥ 1, got {num_candidates}")
        batch = obs.canvas.shape[0]
        self._check_inputs("obs.", obs.canvas, obs.action_mask, target, noise, (batch,))
        state = self._check_state(state, batch)
        first = (obs.step == 0).to(torch.bool)
        prev_action = state.prev_action * (~first).long()[:, None]
        x, skip = self._torso(obs.canvas, target, noise, prev_action, obs.action_mask)
        core_out, h, c = self._core(x[None], state.h, state.c, first[None])
        z = core_out[0]
        repeated_skip = skip.repeat_interleave(num_candidates, 0) if skip is not None else None
        actions, log_prob, _ = self._head(z.repeat_interleave(num_candidates, 0), None, True, generator, repeated_skip)
        actions = actions.view(batch, num_candidates, -1)
        log_prob = log_prob.sum(-1).view(batch, num_candidates)
        if include_greedy:
            greedy, greedy_log_prob, _ = self._head(z, None, False, None, skip)
            actions[:, 0] = greedy
            log_prob[:, 0] = greedy_log_prob.sum(-1)
        return actions, log_prob, torch.stack((h, c))
