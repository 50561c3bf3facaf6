"""The action spec: which discrete components an environment's actions have, and their sizes.

Shared by the environments (which validate and execute actions), the policy head (which decodes
components autoregressively) and the wire format (actions travel as a ``[T, B, K]`` int tensor whose
columns follow ``ActionSpec.names``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import torch


class Component(str, enum.Enum):
    """Every action component any environment may use. Order = the policy head's decoding order
    (SPIRAL-NOTES §2: flag, end, control, size, pressure, red, green, blue)."""

    FLAG = "flag"
    END = "end"
    CONTROL = "control"
    SIZE = "size"
    PRESSURE = "pressure"
    RED = "red"
    GREEN = "green"
    BLUE = "blue"
    # MuJoCo Scenes components (SPIRAL-NOTES §5).
    SHAPE = "shape"
    POSITION = "position"
    ROTATION = "rotation"


#: Components addressed as a cell of a ``grid × grid`` lattice; the policy decodes them spatially.
SPATIAL_COMPONENTS = frozenset({Component.END, Component.CONTROL, Component.POSITION})


@dataclass(frozen=True)
class ComponentSpec:
    """One discrete component: ``size`` values, 0..size-1; spatial ones index a grid cell."""

    name: Component
    size: int
    grid: int | None = None  # set for spatial components: size == grid * grid

    @property
    def spatial(self) -> bool:
        return self.grid is not None


@dataclass(frozen=True)
class ActionSpec:
    """The ordered components of one environment's action.

    Actions are ``LongTensor[B, K]`` (or ``[T, B, K]``) with column ``k`` holding component
    ``components[k]``. The order is the policy head's decoding order.
    """

    components: tuple[ComponentSpec, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name.value for c in self.components)

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(c.size for c in self.components)

    def __len__(self) -> int:
        return len(self.components)

    def index(self, name: Component | str) -> int:
        """Column of component ``name``.

        Raises:
            KeyError: the spec has no such component (the message lists the ones it has).
        """
        key = Component(name).value if not isinstance(name, Component) else name.value
        try:
            return self.names.index(key)
        except ValueError:
            raise KeyError(f"action spec has no component {key!r}; it has {list(self.names)}") from None

    def has(self, name: Component | str) -> bool:
        return Component(name).value in self.names

    def validate(self, actions: torch.Tensor) -> None:
        """Check an action batch against the spec; never clip silently.

        Raises:
            ValueError: wrong dtype, shape, or a component out of its range (names the component,
                the offending value and the valid range).
        """
        if not isinstance(actions, torch.Tensor):
            raise ValueError(f"actions must be a torch.Tensor of shape [B, {len(self)}], got {type(actions).__name__}")
        if actions.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise ValueError(f"actions must be an integer tensor (int64), got dtype {actions.dtype}")
        if actions.dim() != 2 or actions.shape[1] != len(self):
            raise ValueError(
                f"actions must have shape [B, {len(self)}] with columns {list(self.names)}, "
                f"got shape {list(actions.shape)}"
            )
        for k, comp in enumerate(self.components):
            column = actions[:, k]
            bad = (column < 0) | (column >= comp.size)
            if bool(bad.any()):
                row = int(bad.nonzero()[0, 0])
                raise ValueError(
                    f"action component {comp.name.value!r} of batch row {row} is {int(column[row])}; "
                    f"valid range is 0..{comp.size - 1}"
                )

    def from_dicts(self, programs: list[dict[str, int]]) -> torch.Tensor:
        """Convert ``[{"flag": 1, "end": 37, ...}, ...]`` to ``LongTensor[B, K]``.

        Raises:
            ValueError: a component is missing or unknown (names it and the expected ones).
        """
        rows = []
        for i, action in enumerate(programs):
            missing = [n for n in self.names if n not in action]
            unknown = [n for n in action if n not in self.names]
            if missing or unknown:
                raise ValueError(
                    f"action {i}: missing components {missing}, unknown components {unknown}; "
                    f"expected exactly {list(self.names)}"
                )
            rows.append([int(action[n]) for n in self.names])
        tensor = torch.tensor(rows, dtype=torch.long).reshape(len(rows), len(self))
        self.validate(tensor)
        return tensor

    def to_dicts(self, actions: torch.Tensor) -> list[dict[str, int]]:
        """Inverse of :meth:`from_dicts` for a ``[B, K]`` batch."""
        return [dict(zip(self.names, map(int, row), strict=False)) for row in actions.tolist()]
