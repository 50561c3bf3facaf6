"""Phases, condition types and condition reasons of a SpiralJob — the strings `kubectl wait` and dashboards match.

Conditions follow the Kubeflow training operator (Created, Running, Restarting, Succeeded, Failed,
Suspended). Every reason is a CamelCase constant documented with the condition it belongs to, so a
reason is never invented inline in a handler.
"""

from __future__ import annotations

import enum


class Phase(str, enum.Enum):
    """``status.phase``: the one-word summary; Succeeded and Failed are terminal."""

    CREATED = "Created"
    RUNNING = "Running"
    RESTARTING = "Restarting"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"

    @property
    def terminal(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED)


class ConditionType(str, enum.Enum):
    """``status.conditions[].type``; the same names as the phases."""

    CREATED = "Created"
    RUNNING = "Running"
    RESTARTING = "Restarting"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"


# --- Created ---------------------------------------------------------------------------------
#: Created=True: every child object exists (or was patched to the current spec).
CHILDREN_CREATED = "ChildrenCreated"

# --- Running ---------------------------------------------------------------------------------
#: Running=True: learners and replay are ready and at least one actor is ready.
ALL_ROLES_READY = "AllRolesReady"
#: Running=False: some role has fewer ready pods than desired (message lists which).
ROLES_NOT_READY = "RolesNotReady"
#: Running=False: the job is suspended.
JOB_SUSPENDED = "JobSuspended"
#: Running=False: the job reached a terminal phase.
JOB_FINISHED = "JobFinished"

# --- Restarting ------------------------------------------------------------------------------
#: Restarting=True: a learner or the replay crashed; learners and replay restart together from the checkpoint.
COORDINATED_RESTART = "CoordinatedRestart"
#: Restarting=False: the restarted pods are all ready again.
RESTART_COMPLETED = "RestartCompleted"

# --- Succeeded -------------------------------------------------------------------------------
#: Succeeded=True: the policy learner's container exited with code 0 (budget reached).
BUDGET_REACHED = "BudgetReached"

# --- Failed ----------------------------------------------------------------------------------
#: Failed=True: more coordinated restarts than runPolicy.backoffLimit.
BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
#: Failed=True: running longer than runPolicy.activeDeadlineSeconds.
DEADLINE_EXCEEDED = "DeadlineExceeded"
#: Failed=True: the spec passed the schema but is still invalid (message says what to fix).
INVALID_SPEC = "InvalidSpec"
#: Failed=True: the API server rejected a child object rendered from the spec (e.g. a bad pod template override).
CHILD_REJECTED = "ChildRejected"

# --- Suspended -------------------------------------------------------------------------------
#: Suspended=True: runPolicy.suspend is true; every workload is scaled to zero.
SUSPENDED_BY_USER = "SuspendedByUser"
#: Suspended=False: runPolicy.suspend went back to false; training continues from the checkpoint.
RESUMED = "Resumed"

# --- Events without a condition --------------------------------------------------------------
#: Event: the actor autoscaler changed spec.actor.replicas.
ACTORS_SCALED = "ActorsScaled"
#: Event: a finished job's pods were removed according to runPolicy.cleanPodPolicy.
PODS_CLEANED = "PodsCleaned"
#: Event: ttlSecondsAfterFinished elapsed; the job is being deleted.
TTL_EXPIRED = "TTLExpired"
#: Event: an actor pod crashed; only that actor restarts (its Deployment replaces it).
ACTOR_CRASHED = "ActorCrashed"

# Populations (spec.population.size ≥ 2; spiral_operator.population).
#: Running=True: at least one member trains (message: how many, and the best member).
MEMBERS_RUNNING = "MembersRunning"
#: Running=False: no member trains yet (their pods are starting).
MEMBERS_STARTING = "MembersStarting"
#: Succeeded/Failed=True: every member finished; Succeeded when one of them did.
MEMBERS_FINISHED = "MembersFinished"
#: Event: an exploit starts (the target is stopped to take the source's checkpoint).
POPULATION_EXPLOIT = "PopulationExploit"
#: Event: the target resumes from the copied checkpoint with explored hyperparameters.
POPULATION_EXPLORE = "PopulationExplore"
#: Warning Event: an exploit's copy failed or could not happen; the target resumes unchanged.
POPULATION_EXPLOIT_FAILED = "PopulationExploitFailed"
