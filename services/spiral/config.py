"""One tree of frozen, validated configuration models — the single source of truth.

The CLI (``spiral train``/``serve``), the local launcher and the Kubernetes operator all build these
same objects (the operator from a SpiralJob spec, through :func:`load_config_dict`). Models are
grouped by concern (env, agent, discriminator, reward, learner, data, replay, services, search,
pretraining, population) so each service reads only its part. Every model forbids unknown keys and is frozen: derived values come
from functions returning new objects, never from mutation.
"""

from __future__ import annotations

import enum
import math
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, cast

import annotated_types
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the key, the value and what is valid."""


#: Largest accepted ``seed``: the largest integer a JSON number holds exactly (a SpiralJob's seed
#: goes through the API server, Helm and kubectl as one), far inside torch's 64-bit seeds even
#: after the derived seeds (the discriminator learner's ``seed + 2``, actor seeds).
MAX_SEED = 2**53 - 1


class _Frozen(BaseModel):
    # allow_inf_nan=False: `reward.scale: .inf` or `brush_sizes: [.nan]` would pass every bound
    # (NaN compares false) and only crash, or silently poison the weights, inside a running job.
    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False, validate_default=True, allow_inf_nan=False)


# --------------------------------------------------------------------------------------- env ---


class Renderer(str, enum.Enum):
    FAST = "fast"
    LIBMYPAINT = "libmypaint"
    MUJOCO = "mujoco"


class ColorMode(str, enum.Enum):
    GRAYSCALE = "grayscale"
    RGB = "rgb"


class InkStyle(str, enum.Enum):
    """White strokes on black (MNIST style) or black strokes on white paper."""

    WHITE_ON_BLACK = "white_on_black"
    BLACK_ON_WHITE = "black_on_white"


class MujocoSceneConfig(_Frozen):
    """MuJoCo Scenes action space (SPIRAL-NOTES §5, our decisions)."""

    max_objects: int = Field(5, ge=1, le=16, description="Objects per scene at most (paper: 5).")
    position_grid: int = Field(8, ge=2, le=32, description="Positions form a grid×grid lattice over the platform.")
    size_levels: int = Field(3, ge=1, le=16, description="Discrete object sizes.")
    color_levels: int = Field(4, ge=2, le=32, description="Levels per RGB channel.")
    rotation_levels: int = Field(4, ge=1, le=32, description="Discrete yaw angles over [0, π/2).")
    shadows: bool = Field(False, description="Shadow maps cost ~25× render time on the CPU; off by default.")


class EnvConfig(_Frozen):
    """The graphics program the agent drives (SPIRAL-NOTES §1)."""

    renderer: Renderer = Field(Renderer.FAST, description="`fast` (batched torch), `libmypaint` (the real library) or `mujoco`.")
    canvas_size: int = Field(64, ge=16, le=256, description="Canvas side in pixels; the paper uses 64.")
    grid_size: int = Field(32, ge=2, le=64, description="`end`/`control` positions form a grid×grid lattice (paper: 32).")
    episode_length: int = Field(20, ge=2, le=1000, description="Steps per episode, counting the reset (20 → 19 actions).")
    color: ColorMode = Field(ColorMode.GRAYSCALE, description="Grayscale drops the red/green/blue components.")
    ink: InkStyle = Field(InkStyle.WHITE_ON_BLACK, description="MNIST is white on black.")
    brush: str = Field("classic/dry_brush", description="libmypaint brush, relative to the brushes folder, without `.myb`.")
    brush_sizes: tuple[float, ...] = Field(
        (1.0, 2.0, 4.0, 8.0, 12.0, 24.0),
        min_length=1,
        description="Brush radii in pixels; one size drops the `size` component.",
    )
    use_pressure: bool = Field(True, description="False drops the `pressure` component (full pressure).")
    pressure_levels: int = Field(10, ge=2, le=64, description="Pressure values linspace(0.1, 1).")
    color_levels: int = Field(20, ge=2, le=256, description="Levels per colour channel, linspace(0, 1).")
    device: str = Field("cpu", description="Torch device for the fast renderer (`cpu`, `cuda`, `auto`).")
    mujoco: MujocoSceneConfig = Field(default_factory=MujocoSceneConfig)

    @model_validator(mode="after")
    def _check(self) -> EnvConfig:
        if self.renderer != Renderer.MUJOCO and self.grid_size > self.canvas_size:
            raise ValueError(f"env.grid_size ({self.grid_size}) must be ≤ env.canvas_size ({self.canvas_size})")
        if any(r <= 0 for r in self.brush_sizes):
            raise ValueError(f"env.brush_sizes must all be > 0, got {list(self.brush_sizes)}")
        return self


# ------------------------------------------------------------------------------------- agent ---


class AgentPreset(str, enum.Enum):
    PAPER = "paper"  # the published sizes (SPIRAL-NOTES §2): ~1.5M params, heavy on a CPU
    SMALL = "small"  # ~10× cheaper; learns within 30 CPU-minutes on 2 cores


class AgentConfig(_Frozen):
    """Policy network sizes. ``preset`` fills every size left unset (see ``spiral.agents.presets``)."""

    preset: AgentPreset = Field(AgentPreset.SMALL, description="Size preset.")
    conv_channels: int | None = Field(None, ge=4, le=256, description="Encoder width (paper: 32).")
    num_residual_blocks: int | None = Field(None, ge=0, le=16, description="Residual blocks at 8×8 (paper: 8).")
    hidden_size: int | None = Field(None, ge=16, le=1024, description="Linear and LSTM width (paper: 256).")
    embed_size: int | None = Field(None, ge=4, le=128, description="Per-component action embedding (paper: 16).")
    noise_size: int = Field(10, ge=1, le=128, description="Unconditional generation's N(0,1) noise vector (paper: 10).")
    spatial_skip: bool | None = Field(None, description="Image features skip the LSTM into the spatial decoders (small: on, paper: off).")


# ----------------------------------------------------------------------------- discriminator ---


class DiscriminatorLoss(str, enum.Enum):
    WGAN_GP = "wgan_gp"  # SPIRAL
    SN_NONSATURATING = "sn_nonsaturating"  # SPIRAL++


class ConditioningMode(str, enum.Enum):
    NONE = "none"  # unconditional: D(canvas)
    PAIR = "pair"  # real (target, target), fake (target, canvas)
    COMPLEMENT = "complement"  # SPIRAL++ random half-mask


class DiscriminatorConfig(_Frozen):
    loss: DiscriminatorLoss = Field(DiscriminatorLoss.WGAN_GP)
    conditioning: ConditioningMode = Field(ConditioningMode.PAIR, description="Ignored (forced `none`) for unconditional jobs.")
    gp_coef: float = Field(10.0, ge=0.0, description="WGAN-GP λ (Gulrajani et al. default 10).")
    gp_target_norm: float = Field(1.0, gt=0.0, description="Gradient-norm target of the penalty.")
    channels: int = Field(32, ge=4, le=512, description="First conv width; doubles per stride-2 layer.")
    learning_rate: float = Field(1e-4, gt=0.0, le=1.0, description="Adam lr (SPIRAL-NOTES §3).")
    batch_size: int = Field(64, ge=1, le=4096)
    adam_beta1: float = Field(0.5, ge=0.0, lt=1.0)
    adam_beta2: float = Field(0.999, ge=0.0, lt=1.0)


# ------------------------------------------------------------------------------------ reward ---


class RewardKind(str, enum.Enum):
    DISCRIMINATOR = "discriminator"
    L2 = "l2"


class RewardConfig(_Frozen):
    kind: RewardKind = Field(RewardKind.L2, description="D(final canvas) or −L2(final canvas, target).")
    temporal_credit: bool = Field(False, description="SPIRAL++: r_t = f(c_t) − f(c_{t−1}) instead of a final-step reward.")
    stroke_penalty: float = Field(0.0, ge=0.0, description="Subtracted for each new continuous stroke (paper's MNIST setting).")
    scale: float = Field(1.0, gt=0.0, description="Multiplies the reward before learning.")
    blur_sigma: float = Field(
        0.0,
        ge=0.0,
        le=16.0,
        description="Gaussian blur (pixels) of canvas and target before −L2: near misses earn partial credit. 0 = plain L2. Evaluation always uses plain L2.",
    )


# ----------------------------------------------------------------------------------- learner ---


class LearnerConfig(_Frozen):
    """Advantage actor-critic with V-trace (IMPALA)."""

    learning_rate: float = Field(
        6e-4,
        gt=0.0,
        le=1.0,
        description="Adam lr; 6e-4 learned fastest in our CPU sweeps (paper range 1e-5..3e-4 with far larger batches).",
    )
    learning_rate_final_fraction: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        description=(
            "The policy's learning rate when the budget is spent, as a fraction of `learning_rate`, reached linearly over the "
            "budget (its most advanced of frames, updates and wall minutes): 1 = constant; 0 = CleanRL's --anneal-lr."
        ),
    )
    adam_beta1: float = Field(0.5, ge=0.0, lt=1.0, description="SPIRAL uses β1 = 0.5.")
    adam_beta2: float = Field(0.999, ge=0.0, lt=1.0)
    entropy_coef: float = Field(
        0.15,
        ge=0.0,
        description=(
            "Weight of the entropy bonus on *normalised* per-component entropies (each in [0, 1]); 0.15 keeps the paint flag "
            "exploring (sweep: 0.05 collapses, 0.3 learns slower)."
        ),
    )
    baseline_coef: float = Field(0.5, ge=0.0)
    discount: float = Field(1.0, ge=0.0, le=1.0, description="1.0 for short episodes.")
    max_grad_norm: float = Field(40.0, gt=0.0)
    queue_size: int = Field(
        1,
        ge=1,
        le=1024,
        description="Trajectories the policy learner's batching queue holds; each extra slot adds about one version of policy lag.",
    )
    clip_rho_threshold: float = Field(1.0, gt=0.0)
    clip_pg_rho_threshold: float = Field(1.0, gt=0.0)
    hyperparameters_file: Path | None = Field(
        None,
        description=(
            "A JSON object of hyperparameters the learners apply while running, without a restart (keys: learning_rate, "
            "entropy_coef, discriminator_learning_rate; each optional, each within its field's bounds): how a population "
            "explores. Polled every few updates; a bad file is logged and ignored. None = off: the values above stay fixed."
        ),
    )


# -------------------------------------------------------------------------------------- data ---


class DatasetName(str, enum.Enum):
    SHAPES = "shapes"  # built-in procedural default: no files, no download
    MNIST = "mnist"
    OMNIGLOT = "omniglot"
    CELEBA = "celeba"
    FOLDER = "folder"
    MUJOCO_SCENES = "mujoco-scenes"


#: What ``data.path`` must point at, per dataset (named in the error when it is missing).
DATA_PATH_CONTENTS: dict[DatasetName, str] = {
    DatasetName.MNIST: "the folder holding MNIST's IDX .gz files (`spiral data download mnist`)",
    DatasetName.OMNIGLOT: "the folder holding the Omniglot zip archives, or one archive",
    DatasetName.CELEBA: "the img_align_celeba/ folder or img_align_celeba.zip",
    DatasetName.FOLDER: "a folder of PNG/JPEG images (searched recursively)",
    DatasetName.MUJOCO_SCENES: "the rendered MuJoCo Scenes dataset (`spiral data mujoco-scenes`)",
}


class DataConfig(_Frozen):
    #: How error messages name this section: ``data`` here, ``dataset`` in a SpiralJob.
    section_name: ClassVar[str] = "data"

    name: DatasetName = Field(DatasetName.SHAPES)
    path: Path | None = Field(None, description="Folder or archive; required for every dataset but `shapes`.")
    held_out_fraction: float = Field(0.1, gt=0.0, lt=1.0, description="Deterministic held-out split, never trained on.")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Seed of the split and the procedural generator.")
    subset: str | None = Field(
        None,
        description="Dataset-specific subset (e.g. Omniglot `images_background_small1:images_background_small2` = train:held-out archives).",
    )
    max_images: int | None = Field(
        None,
        ge=2,
        description="Read at most this many images (seeded choice before decoding); full CelebA is ~200k images / 2.5 GB uint8 at 64×64.",
    )
    num_shapes: int = Field(11_000, ge=2, description="Images generated for the built-in `shapes` dataset (train + held-out).")

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        if self.name != DatasetName.SHAPES and self.path is None:
            raise ValueError(
                f"{self.section_name}.path is required for dataset {self.name.value!r} (only 'shapes' needs no files): "
                f"set it to {DATA_PATH_CONTENTS[self.name]}"
            )
        return self


# ------------------------------------------------------------------------------------ replay ---


class SamplerKind(str, enum.Enum):
    UNIFORM = "uniform"
    FIFO = "fifo"


class ReplayConfig(_Frozen):
    max_size: int = Field(10_000, ge=1, description="Items kept; the oldest is removed beyond it.")
    sampler: SamplerKind = Field(SamplerKind.UNIFORM)
    max_times_sampled: int = Field(0, ge=0, description="0 = unlimited.")
    min_size_to_sample: int = Field(64, ge=1)
    samples_per_insert: float | None = Field(None, gt=0.0, description="None disables the ratio limiter.")
    error_buffer: float = Field(1000.0, gt=0.0, description="Slack of the samples-per-insert limiter.")
    checkpoint_path: Path | None = Field(None, description="Replay checkpoint file; default <output_dir>/replay/replay.ckpt.")
    checkpoint_every_seconds: float | None = Field(
        60.0,
        gt=0.0,
        description=(
            "Seconds between periodic replay checkpoints, so a SIGKILL (OOM, node loss) loses at most this much; "
            "None = only on request and on SIGTERM. 60 s: writing 10k 64×64 items takes well under a second."
        ),
    )

    @model_validator(mode="after")
    def _check(self) -> ReplayConfig:
        # The rules a Table enforces when it is built, checked here so that a deadlocking buffer is
        # refused before anything starts (and by the CRD, whose CEL rules mirror these).
        if self.min_size_to_sample > self.max_size:
            raise ValueError(
                f"replay.min_size_to_sample ({self.min_size_to_sample}) exceeds replay.max_size ({self.max_size}): sampling would wait forever"
            )
        if self.samples_per_insert is None:
            return self
        if self.max_times_sampled and self.samples_per_insert > self.max_times_sampled:
            raise ValueError(
                f"replay.samples_per_insert ({self.samples_per_insert:g}) exceeds replay.max_times_sampled ({self.max_times_sampled}): "
                "items would be removed faster than the ratio allows and inserts and samples deadlock"
            )
        from spiral.replay.rate_limiters import rate_limiter_from_config  # the limiter's own rules, named by key

        rate_limiter_from_config(self)
        return self


# ---------------------------------------------------------------------------------- services ---


class Role(str, enum.Enum):
    """The four service kinds; the same names are used by `spiral serve`, the launcher and the operator."""

    ACTOR = "actor"
    POLICY_LEARNER = "policy-learner"
    DISCRIMINATOR_LEARNER = "discriminator-learner"
    REPLAY = "replay"


class TLSConfig(_Frozen):
    """Optional (mutual) TLS between services; plaintext is only allowed on loopback."""

    enabled: bool = Field(False)
    cert_file: Path | None = Field(None, description="PEM certificate of this service.")
    key_file: Path | None = Field(None, description="PEM private key of this service.")
    ca_file: Path | None = Field(None, description="PEM CA bundle; set it to require and verify client certificates (mTLS).")

    @model_validator(mode="after")
    def _check(self) -> TLSConfig:
        if self.enabled and (self.cert_file is None or self.key_file is None):
            raise ValueError("tls.enabled needs tls.cert_file and tls.key_file")
        return self


#: Bytes a message needs besides its payload (protobuf tags, shapes, names): the margin the
#: size checks below keep under ``services.max_message_bytes``.
MESSAGE_OVERHEAD_BYTES = 1024
#: The smallest weights chunk (``services.weight_chunk_bytes``'s lower bound).
MIN_WEIGHT_CHUNK_BYTES = 1024


class ServicesConfig(_Frozen):
    """Where the services listen and how they talk. Ports are per process; the launcher offsets them."""

    grpc_port: int = Field(50051, ge=0, le=65535, description="gRPC port; 0 picks a free one.")
    metrics_port: int = Field(9400, ge=0, le=65535, description="Prometheus /metrics port; 0 picks a free one.")
    bind_address: str = Field("127.0.0.1", description="Listen address; non-loopback needs TLS unless allow_insecure.")
    allow_insecure: bool = Field(False, description="Permit plaintext on non-loopback addresses (inside a NetworkPolicy).")
    policy_learner_address: str = Field("127.0.0.1:50051")
    discriminator_learner_address: str = Field("127.0.0.1:50052")
    replay_address: str = Field("127.0.0.1:50053")
    max_message_bytes: int = Field(64 * 1024 * 1024, ge=1024, description="gRPC send/receive limit per message.")
    rpc_deadline_seconds: float = Field(30.0, gt=0.0, description="Deadline of unary calls.")
    weight_chunk_bytes: int = Field(
        1024 * 1024,
        ge=MIN_WEIGHT_CHUNK_BYTES,
        description="Weights stream in chunks of this size (below gRPC's 4 MB default); lowered to fit max_message_bytes.",
    )
    shutdown_grace_seconds: float = Field(5.0, ge=0.0, description="In-flight RPCs get this long after SIGTERM (well inside a pod's 30 s grace period).")
    max_workers: int = Field(
        64,
        ge=4,
        le=4096,
        description=(
            "gRPC server threads at least; every open stream holds one, so each server adds enough for its per-method "
            "stream limit (num_actors + a margin) plus a reserve for health and status calls."
        ),
    )
    health_port: int = Field(
        0,
        ge=0,
        le=65535,
        description=(
            "With TLS: a plaintext gRPC health service on 127.0.0.1 only, for the pod's exec probes (a kubelet probe cannot "
            "present a client certificate); unused without TLS. 0 picks a free port (the operator sets a fixed one)."
        ),
    )
    tls: TLSConfig = Field(default_factory=TLSConfig)

    @model_validator(mode="after")
    def _check(self) -> ServicesConfig:
        smallest = MIN_WEIGHT_CHUNK_BYTES + MESSAGE_OVERHEAD_BYTES
        if self.max_message_bytes < smallest:
            raise ValueError(
                f"services.max_message_bytes ({self.max_message_bytes}) leaves no room for a weights chunk: it must be at least "
                f"{smallest} ({MIN_WEIGHT_CHUNK_BYTES}-byte chunks + {MESSAGE_OVERHEAD_BYTES} bytes of framing)"
            )
        return self

    @property
    def effective_weight_chunk_bytes(self) -> int:
        """``weight_chunk_bytes``, lowered so that a chunk with its framing fits ``max_message_bytes``."""
        return min(self.weight_chunk_bytes, self.max_message_bytes - MESSAGE_OVERHEAD_BYTES)

# ------------------------------------------------------------------ search and pretraining ---


class SearchConfig(_Frozen):
    """Search-based action selection (:mod:`spiral.learning.search`): K policy candidates per step,
    rendered together, the best by −L2 to the target kept."""

    candidates: int = Field(
        0,
        ge=0,
        le=256,
        description="Candidates per step when actors and the single-process trainer play with search; 0 = off (they sample the policy).",
    )
    fraction: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        description="Share of rollouts played with search when `candidates` > 0; the rest sample the policy and train by policy gradient.",
    )
    imitation_coef: float = Field(
        1.0,
        ge=0.0,
        le=100.0,
        description=(
            "Weight of the cross-entropy toward the actions a search chose (searched episodes train by imitation: their behaviour "
            "policy is the search)."
        ),
    )
    eval_candidates: int = Field(
        0,
        ge=0,
        le=256,
        description="Also evaluate with search at paint time (`eval/held_out_l2_search`); 0 = greedy and sampled only.",
    )
    lookahead: int = Field(
        0,
        ge=0,
        le=256,
        description=(
            "Candidates that could follow a move when the actors' and the single-process trainer's search scores it: a move is "
            "worth the best paint it leads to (0 = a move scores 'no change'). Paint-time search looks ahead as wide as it searches "
            "(`spiral eval --lookahead` overrides). Needs env.renderer 'fast'."
        ),
    )


class ProgramPriorConfig(_Frozen):
    """Random stroke programs for pretraining (:mod:`spiral.learning.program_prior`); generic on
    purpose — curves of a few segments, not any dataset's shapes — so what is learnt transfers."""

    new_stroke_probability: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description="After a paint step, the chance that the brush lifts and moves to a new random start.",
    )
    min_segment: float = Field(0.125, gt=0.0, le=1.0, description="Shortest segment (one paint step), as a fraction of the canvas side.")
    max_segment: float = Field(0.45, gt=0.0, le=1.5, description="Longest segment, as a fraction of the canvas side.")
    turn_radians: float = Field(1.2, ge=0.0, le=6.3, description="Std of the direction change between consecutive segments of one stroke.")
    bend: float = Field(0.5, ge=0.0, le=2.0, description="Control point offset from the chord's midpoint, up to ±this × the chord length.")
    idle_tail_probability: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description="Chance that an episode stops painting from a random step on (teaches the policy to stop when the target is done).",
    )

    @model_validator(mode="after")
    def _check(self) -> ProgramPriorConfig:
        if self.min_segment > self.max_segment:
            raise ValueError(f"pretrain.prior.min_segment ({self.min_segment}) must be ≤ max_segment ({self.max_segment})")
        return self


class PretrainConfig(_Frozen):
    """Supervised pretraining on synthetic programs before reinforcement learning: the policy learns
    to predict the program that painted a target (teacher forcing through the autoregressive head)."""

    updates: int = Field(
        0,
        ge=0,
        le=10_000_000,
        description="Pretraining updates before RL; 0 = off. Their wall time counts inside max_wall_minutes; their frames do not count as RL frames.",
    )
    batch_size: int = Field(64, ge=1, le=4096, description="Synthetic programs per pretraining update.")
    learning_rate: float | None = Field(None, gt=0.0, le=1.0, description="Adam lr while pretraining; None = learner.learning_rate.")
    fresh_optimizer_for_rl: bool = Field(
        True,
        description=(
            "Start RL with fresh Adam moments instead of pretraining's. Pretraining's gradients (a mean cross-entropy, norm ~1.5 "
            "on the default preset) are ~25x smaller than RL's (summed losses, clipped at learner.max_grad_norm 40), so carried "
            "second moments made the first RL steps up to ~25x the learning rate, and the greedy policy could flip to never "
            "lifting the brush."
        ),
    )
    prior: ProgramPriorConfig = Field(default_factory=ProgramPriorConfig)
    teacher: Path | None = Field(
        None,
        description=(
            "A conditional checkpoint whose programs replace the synthetic ones: it paints train images (with search) and the "
            "policy learns to draw the same programs — how an unconditional policy learns what data looks like as strokes. None = "
            "synthetic programs."
        ),
    )
    teacher_search: int = Field(16, ge=0, le=256, description="Candidates per step the teacher paints with (0 = its greedy policy).")
    teacher_programs: int = Field(
        4096,
        ge=1,
        le=1_000_000,
        description="Train images the teacher paints once, up front; pretraining updates draw their programs from this bank.",
    )
    threads: int | None = Field(
        None,
        ge=1,
        le=256,
        description=(
            "torch threads while pretraining (the actors only wait meanwhile); None = the process's own. `spiral train` on one "
            "machine sets it to the machine's cores."
        ),
    )


# -------------------------------------------------------------------------------- population ---


class FieldBounds(NamedTuple):
    """The valid range of a numeric config field, as its ``Field(ge=…, gt=…, le=…, lt=…)`` says."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False  # ``gt``: the low end itself is invalid
    high_open: bool = False  # ``lt``: the high end itself is invalid

    def contains(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def clip(self, value: float) -> float:
        """The valid value nearest to ``value`` (an open end is approached to within one float step)."""
        low = math.nextafter(self.low, math.inf) if self.low_open else self.low
        high = math.nextafter(self.high, -math.inf) if self.high_open else self.high
        return min(max(value, low), high)

    def __str__(self) -> str:
        opens = "(" if self.low_open or math.isinf(self.low) else "["
        closes = ")" if self.high_open or math.isinf(self.high) else "]"
        return f"{opens}{self.low:g}, {self.high:g}{closes}"


def field_bounds(model: type[BaseModel], name: str) -> FieldBounds:
    """The bounds of ``model``'s numeric field ``name``, read from the field itself (never restated)."""
    bounds = FieldBounds()
    for item in model.model_fields[name].metadata:
        if isinstance(item, annotated_types.Ge):
            bounds = bounds._replace(low=cast(float, item.ge), low_open=False)
        elif isinstance(item, annotated_types.Gt):
            bounds = bounds._replace(low=cast(float, item.gt), low_open=True)
        elif isinstance(item, annotated_types.Le):
            bounds = bounds._replace(high=cast(float, item.le), high_open=False)
        elif isinstance(item, annotated_types.Lt):
            bounds = bounds._replace(high=cast(float, item.lt), high_open=True)
    return bounds


class Hyperparameter(str, enum.Enum):
    """A hyperparameter the learners apply while they run (``learner.hyperparameters_file``) and a
    population explores. Each stands for one config field (:attr:`field`) and keeps its bounds."""

    LEARNING_RATE = "learning_rate"  # learner.learning_rate: the policy's Adam
    ENTROPY_COEF = "entropy_coef"  # learner.entropy_coef: the policy loss's entropy bonus
    DISCRIMINATOR_LEARNING_RATE = "discriminator_learning_rate"  # discriminator.learning_rate: the critic's Adam

    @property
    def field(self) -> tuple[str, str]:
        """``(section, key)`` of the :class:`TrainConfig` field this hyperparameter overrides."""
        if self is Hyperparameter.DISCRIMINATOR_LEARNING_RATE:
            return ("discriminator", "learning_rate")
        return ("learner", self.value)

    @property
    def bounds(self) -> FieldBounds:
        """The valid values: the config field's own bounds."""
        section, key = self.field
        return field_bounds(DiscriminatorConfig if section == "discriminator" else LearnerConfig, key)


class PopulationMetric(str, enum.Enum):
    """What ranks the members of a population: one scalar of their run logs (:attr:`record_key`)."""

    HELD_OUT_L2 = "held_out_l2"  # eval/held_out_l2: greedy error on held-out targets (conditional); lower is better
    DIGIT_CONFIDENT = "digit_confident"  # eval/digit_confident: share of samples the MNIST classifier names at p ≥ 0.9; higher is better
    D_FAKE = "d_fake"  # charts/d_fake: the member's critic's mean score of its paintings (discriminator reward); higher is better

    @property
    def record_key(self) -> str:
        """The run-log key holding the value (written by evaluation, or by the critic's update for ``d_fake``)."""
        return "charts/d_fake" if self is PopulationMetric.D_FAKE else f"eval/{self.value}"

    @property
    def higher_is_better(self) -> bool:
        return self is not PopulationMetric.HELD_OUT_L2


class ExploitMethod(str, enum.Enum):
    TRUNCATION = "truncation"  # the bottom fraction copies from the top fraction (Jaderberg et al. 2017, §4)


class ExploitConfig(_Frozen):
    """How a lagging member takes a better member's weights (PBT's *exploit*)."""

    method: ExploitMethod = Field(
        ExploitMethod.TRUNCATION,
        description=(
            "`truncation`: rank the measured members by `population.metric`; each of the bottom `fraction` copies a member "
            "drawn from the top `fraction`."
        ),
    )
    fraction: float = Field(
        0.25,
        gt=0.0,
        le=0.5,
        description=(
            "Share of the measured members at the bottom (replaced) and at the top (copied from); at most 0.5 so the two "
            "never overlap. 0.25: one of four (Jaderberg et al. use 0.2)."
        ),
    )


def _factor_range(description: str) -> Any:
    return Field((0.8, 1.25), description=description)


class PerturbConfig(_Frozen):
    """Factor ranges ``[low, high]`` (0 < low ≤ 1 ≤ high): an explored hyperparameter is multiplied by a
    factor drawn log-uniformly from its range, then clipped to its field's bounds; ``[1, 1]`` keeps it.
    [0.8, 1.25] is Jaderberg et al.'s ×0.8/×1.2, made symmetric in log so that repeated perturbations do not drift."""

    learning_rate: tuple[float, float] = _factor_range("[low, high] factors of learner.learning_rate; [1, 1] = not explored.")
    entropy_coef: tuple[float, float] = _factor_range("[low, high] factors of learner.entropy_coef; [1, 1] = not explored.")
    discriminator_learning_rate: tuple[float, float] = _factor_range(
        "[low, high] factors of discriminator.learning_rate (runs with the discriminator reward); [1, 1] = not explored."
    )

    @model_validator(mode="after")
    def _check(self) -> PerturbConfig:
        for name in Hyperparameter:
            low, high = getattr(self, name.value)
            if not 0.0 < low <= 1.0 <= high:
                raise ValueError(
                    f"population.explore.perturb.{name.value} [{low:g}, {high:g}] must be a factor range [low, high] with "
                    "0 < low ≤ 1 ≤ high (e.g. [0.8, 1.25]; [1, 1] keeps the value)"
                )
        return self


class ResampleConfig(_Frozen):
    """Value ranges ``[low, high]`` to redraw a hyperparameter from, log-uniformly, instead of perturbing it
    (PBT's *resample*); a hyperparameter without one is always perturbed."""

    learning_rate: tuple[float, float] | None = Field(None, description="[low, high] values of learner.learning_rate to redraw from; None = always perturbed.")
    entropy_coef: tuple[float, float] | None = Field(None, description="[low, high] values of learner.entropy_coef to redraw from; None = always perturbed.")
    discriminator_learning_rate: tuple[float, float] | None = Field(
        None, description="[low, high] values of discriminator.learning_rate to redraw from; None = always perturbed."
    )

    @model_validator(mode="after")
    def _check(self) -> ResampleConfig:
        for name in Hyperparameter:
            values = getattr(self, name.value)
            if values is None:
                continue
            low, high = values
            bounds = name.bounds
            if not (0.0 < low <= high and bounds.contains(low) and bounds.contains(high)):
                section, key = name.field
                raise ValueError(
                    f"population.explore.resample.{name.value} [{low:g}, {high:g}] must be a value range [low, high] with "
                    f"0 < low ≤ high, inside {section}.{key}'s bounds {bounds}"
                )
        return self


class ExploreConfig(_Frozen):
    """How a member that copied changes its hyperparameters (PBT's *explore*), starting from the source's."""

    perturb: PerturbConfig = Field(default_factory=PerturbConfig)
    resample: ResampleConfig = Field(default_factory=ResampleConfig)
    resample_probability: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Chance, per hyperparameter with a `resample` range, that it is redrawn from that range instead of perturbed; 0 = always perturb.",
    )

    @model_validator(mode="after")
    def _check(self) -> ExploreConfig:
        if self.resample_probability > 0 and all(getattr(self.resample, name.value) is None for name in Hyperparameter):
            raise ValueError(
                f"population.explore.resample_probability ({self.resample_probability:g}) needs a range to redraw from: set "
                "population.explore.resample.learning_rate, .entropy_coef or .discriminator_learning_rate (e.g. [0.0001, 0.001]), or 0"
            )
        return self


class PopulationConfig(_Frozen):
    """Population-based training (Jaderberg et al. 2017), as SPIRAL was trained (a population of 12):
    members train side by side; every so often the worst copy the weights of the best and explore
    around their hyperparameters (:mod:`spiral.population` decides)."""

    size: int = Field(
        0,
        ge=0,
        le=64,
        description="Members, each a whole run with its own actors and learners; 0 or 1 = no population (one run). The paper trained 12.",
    )
    metric: PopulationMetric = Field(
        PopulationMetric.HELD_OUT_L2,
        description=(
            "What ranks the members: `held_out_l2` (conditional; lower is better), `digit_confident` (the digit score, "
            "unconditional MNIST; higher is better) or `d_fake` (the member's own critic's score of its paintings, "
            "discriminator reward; higher is better)."
        ),
    )
    ready_after_updates: int = Field(
        200,
        ge=1,
        le=10_000_000,
        description=(
            "Policy updates a member trains on its own, since its start or its last exploit, before it may be replaced: "
            "time for its metric to measure its own weights (two evaluations at the default eval_every_updates)."
        ),
    )
    exploit: ExploitConfig = Field(default_factory=ExploitConfig)
    explore: ExploreConfig = Field(default_factory=ExploreConfig)

    @property
    def enabled(self) -> bool:
        """Two members at least: one member alone has nobody to copy."""
        return self.size >= 2

    @model_validator(mode="after")
    def _check(self) -> PopulationConfig:
        fraction, size = self.exploit.fraction, self.size
        if self.enabled and fraction * size < 1.0:
            raise ValueError(
                f"population.exploit.fraction ({fraction:g}) × population.size ({size}) = {fraction * size:g} selects no member "
                f"to replace: with {size} members it must be at least 1/{size} (valid: 1/{size} ≤ fraction ≤ 0.5)"
            )
        return self


# ----------------------------------------------------------------------------------- top ---


class Mode(str, enum.Enum):
    CONDITIONAL = "conditional"  # reconstruct a target image
    UNCONDITIONAL = "unconditional"  # generate from noise


class TrainConfig(_Frozen):
    """Everything one training run needs, in one YAML file."""

    mode: Mode = Field(Mode.CONDITIONAL)
    env: EnvConfig = Field(default_factory=EnvConfig)
    agent: AgentConfig = Field(default_factory=AgentConfig)
    discriminator: DiscriminatorConfig = Field(default_factory=DiscriminatorConfig)
    reward: RewardConfig = Field(default_factory=RewardConfig)
    learner: LearnerConfig = Field(default_factory=LearnerConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    replay: ReplayConfig = Field(default_factory=ReplayConfig)
    services: ServicesConfig = Field(default_factory=ServicesConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig)
    population: PopulationConfig = Field(default_factory=PopulationConfig)
    init_from: Path | None = Field(
        None,
        description="Start a fresh run from this checkpoint's policy weights (e.g. one written by `spiral pretrain`); its pretraining then counts as done.",
    )
    num_envs: int = Field(32, ge=1, le=4096, description="Environments stepped in lockstep per actor/process.")
    num_actors: int = Field(2, ge=1, le=1024, description="Actor processes (`spiral train`) or pods.")
    total_frames: int | None = Field(None, gt=0, description="Budget in environment steps; one of frames/updates.")
    total_updates: int | None = Field(None, gt=0, description="Budget in policy updates.")
    max_wall_minutes: float | None = Field(
        None,
        gt=0.0,
        description="Also stop after this much wall-clock time (for fixed-time comparisons such as '30 CPU-minutes').",
    )
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Seeds every generator of the run (networks, data draws, actors).")
    torch_threads: int | None = Field(
        None,
        ge=1,
        le=256,
        description="torch intra-op threads per process; None = torch's default. The launcher gives each service 1 on small machines.",
    )
    output_dir: Path = Field(Path("runs/spiral"), description="Checkpoints, PNG grids, logs.")
    checkpoint_every_updates: int = Field(200, ge=1, description="Policy updates between checkpoints.")
    eval_every_updates: int = Field(100, ge=1, description="Policy updates between held-out evaluations (L2 + a PNG grid).")
    log_every_updates: int = Field(10, ge=1, description="Policy updates between log lines.")
    keep_checkpoints: int = Field(
        3,
        ge=1,
        le=100,
        description="Checkpoints kept per learner (newest first); a resume falls back to the newest one whose checksum verifies.",
    )

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.total_frames is None and self.total_updates is None:
            raise ValueError("set a budget: total_frames or total_updates (both must be > 0)")
        if self.reward.kind == RewardKind.L2 and self.mode == Mode.UNCONDITIONAL:
            raise ValueError("reward.kind 'l2' needs a target: use mode 'conditional' or reward.kind 'discriminator'")
        if (self.env.renderer == Renderer.MUJOCO) != (self.data.name == DatasetName.MUJOCO_SCENES) and self.mode == Mode.CONDITIONAL:
            raise ValueError(
                f"env.renderer {self.env.renderer.value!r} cannot reconstruct dataset {self.data.name.value!r}: "
                "renderer 'mujoco' goes with dataset 'mujoco-scenes' and the painting renderers with the others"
            )
        needed = self.min_trajectory_bytes
        if needed > self.services.max_message_bytes:
            # Otherwise every trajectory is refused with RESOURCE_EXHAUSTED, which actors retry forever.
            raise ValueError(
                f"services.max_message_bytes ({self.services.max_message_bytes}) is below one trajectory: num_envs ({self.num_envs}) × "
                f"env.episode_length ({self.env.episode_length}) canvases of {self.canvas_bytes} bytes need at least {needed} bytes; "
                f"raise services.max_message_bytes to at least {needed} or lower num_envs"
            )
        if self.search.lookahead > 0 and self.env.renderer != Renderer.FAST:
            raise ValueError(
                f"search.lookahead {self.search.lookahead} branches episodes one action ahead, which only env.renderer 'fast' can; "
                f"got {self.env.renderer.value!r}: set search.lookahead 0 or env.renderer 'fast'"
            )
        self._check_population_metric()
        return self

    def _check_population_metric(self) -> None:
        # The metric must be one this run's evaluation writes, or every member stays unmeasured forever.
        metric = self.population.metric
        if not self.population.enabled:
            return
        if metric == PopulationMetric.HELD_OUT_L2 and self.mode != Mode.CONDITIONAL:
            raise ValueError(
                "population.metric 'held_out_l2' ranks reconstructions of held-out targets: it needs mode 'conditional'; "
                "unconditional runs rank by 'digit_confident' (MNIST) or 'd_fake' (discriminator reward)"
            )
        if metric == PopulationMetric.DIGIT_CONFIDENT and (self.mode != Mode.UNCONDITIONAL or self.data.name != DatasetName.MNIST):
            raise ValueError(
                f"population.metric 'digit_confident' is the digit score of unconditional MNIST samples: it needs mode 'unconditional' "
                f"and data.name 'mnist' (got mode {self.mode.value!r}, data.name {self.data.name.value!r}); use 'held_out_l2' or 'd_fake'"
            )
        if metric == PopulationMetric.D_FAKE and not self.uses_discriminator:
            raise ValueError("population.metric 'd_fake' is the critic's score: it needs reward.kind 'discriminator'; use 'held_out_l2' for l2 runs")


    # ------------------------------------------------------------------ derived, read-only ---

    @property
    def canvas_bytes(self) -> int:
        """Bytes of one canvas on the wire (UINT8): C × H × W."""
        channels = 3 if self.env.color == ColorMode.RGB or self.env.renderer == Renderer.MUJOCO else 1
        return channels * self.env.canvas_size**2

    @property
    def min_trajectory_bytes(self) -> int:
        """A lower bound of one trajectory message: its ``episode_length`` canvases per episode
        (T observed + the final one) for ``num_envs`` episodes, plus the framing margin."""
        return self.num_envs * self.env.episode_length * self.canvas_bytes + MESSAGE_OVERHEAD_BYTES

    @property
    def uses_discriminator(self) -> bool:
        """True when a discriminator is trained: the discriminator reward needs its critic."""
        return self.reward.kind == RewardKind.DISCRIMINATOR

    def roles(self) -> tuple[Role, ...]:
        """The services this run needs, in start order (servers before their clients).

        The one answer the local launcher, the services and the operator's renderer all use: the
        replay buffer and the discriminator learner exist only to train a critic, so an ``l2`` run
        has neither.
        """
        if self.uses_discriminator:
            return (Role.REPLAY, Role.DISCRIMINATOR_LEARNER, Role.POLICY_LEARNER, Role.ACTOR)
        return (Role.POLICY_LEARNER, Role.ACTOR)


def _from_override(where: str, set_sources: dict[str, str]) -> str | None:
    """The ``--set`` arguments that put values at or under ``where`` (a dotted location), if any."""
    found = [arg for key, arg in set_sources.items() if where == key or where.startswith(key + ".") or key.startswith(where + ".")]
    return ", ".join(found) or None


def _format_validation_error(err: ValidationError, source: str, set_sources: dict[str, str] | None = None) -> str:
    """One line per problem: the key, what is wrong, the value, and where the value came from (the
    ``--set`` argument, else ``source``); an unknown key gets the closest valid one."""
    from spiral.config_help import did_you_mean  # walks these models: imported when needed

    set_sources = set_sources or {}
    problems, from_command_line = [], 0
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        argument = _from_override(where, set_sources) if e["loc"] else None
        origin = f" (from {argument})" if argument else ""
        if not e["loc"] and set_sources:  # a rule across sections: any override may be the cause
            origin = f" (with {', '.join(set_sources.values())})"
        from_command_line += argument is not None
        if e["type"] == "extra_forbidden":
            suggestion = did_you_mean(e["loc"])
            hint = f"did you mean {suggestion}?" if suggestion else "check the spelling"
            problems.append(f"  - {where}: unknown key{origin}; {hint} (every key: `spiral config keys`)")
        else:
            got = e.get("input")
            shown = "" if isinstance(got, dict) else f" (got {got!r})"  # a section's rule: its message names the values
            problems.append(f"  - {where}: {e['msg']}{shown}{origin}")
    if from_command_line == len(problems):
        header = f"invalid --set value on top of {source}:"
    elif from_command_line:
        header = f"invalid configuration in {source} and its --set values:"
    else:
        header = f"invalid configuration in {source}:"
    return "\n".join([header, *problems])


def load_config_dict(data: dict[str, Any], source: str = "<dict>", *, set_sources: dict[str, str] | None = None) -> TrainConfig:
    """Build a :class:`TrainConfig` from plain data (YAML, a CR spec, CLI overrides).

    Args:
        source: how errors name where ``data`` came from (a file, a preset, a checkpoint).
        set_sources: dotted key → the ``--set`` argument that set it, so that errors blame the
            command line rather than ``source`` for those keys.

    Raises:
        ConfigError: names every wrong key/value, where it came from and the valid options.
    """
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source, set_sources)) from None


def override_argument(key: str, value: Any) -> str:
    """How the user typed an override: ``--set env.grid_size=16``."""
    text = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
    return f"--set {key}={text}"


def load_config(path: Path | str, overrides: dict[str, Any] | None = None, *, source: str | None = None) -> TrainConfig:
    """Read a YAML file and apply dotted overrides (``{"env.grid_size": 16}``).

    Args:
        source: how errors name the file (default: its path).

    Raises:
        ConfigError: unreadable file, not a mapping, or invalid values (naming the file or the
            ``--set`` argument that was wrong).
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot read config {path}: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a YAML mapping at the top level, got {type(data).__name__}")
    overrides = overrides or {}
    set_sources = {key: override_argument(key, value) for key, value in overrides.items()}
    return load_config_dict(apply_overrides(data, overrides), source=source or str(path), set_sources=set_sources)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["env.grid_size=16", "data.path=/x"]`` → ``{"env.grid_size": 16, "data.path": "/x"}``.

    The one KEY=VALUE parser of every ``--set`` flag (``spiral train``, ``spiral serve``); values
    are read as YAML scalars, so ``16`` is an int, ``null`` is None and ``fifo`` a string.

    Raises:
        ConfigError: an item without ``=`` or without a key (names the item).
    """
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE with a dotted key (e.g. env.grid_size=16), got {item!r}")
        overrides[key.strip()] = yaml.safe_load(raw)
    return overrides


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of ``data`` with dotted-key overrides applied (``a.b.c = v``)."""
    import copy

    result = copy.deepcopy(data)
    for dotted, value in overrides.items():
        node = result
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{override_argument(dotted, value)}: {key!r} is a value, not a section (every key: `spiral config keys`)")
        node[leaf] = value
    return result


#: Named starting points for ``spiral train --preset``; YAML files shipped inside the package.
PRESETS = ("default", "mnist", "omniglot", "celeba", "mujoco-scenes")


def preset_path(name: str) -> Path:
    """The YAML file of preset ``name``.

    Raises:
        ConfigError: unknown preset (lists the valid ones).
    """
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
    return Path(__file__).parent / "presets" / f"{name}.yaml"


def load_preset(name: str, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """A preset with dotted overrides applied (``{"data.path": "/data/mnist"}``).

    Raises:
        ConfigError: unknown preset or invalid overrides.
    """
    path = preset_path(name)
    return load_config(path, overrides, source=f"preset {name!r} ({path})")
