"""What a person needs to find a config key: every key with its type, default and description
(``spiral config keys``), the effective config as YAML (``spiral config show``), and "did you
mean" for a misspelt key (used by :mod:`spiral.config`'s error messages).

Pure functions over the pydantic models of :mod:`spiral.config`; the tree is walked, never
restated, so a new field appears here by itself.
"""

from __future__ import annotations

import difflib
import enum
import types
import typing
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from pydantic import BaseModel

from spiral.config import TrainConfig


class ConfigKey(NamedTuple):
    """One leaf of the config tree."""

    key: str  # dotted, e.g. ``env.grid_size``
    type: str  # e.g. ``int``, ``fast | libmypaint | mujoco``, ``float or null``
    default: Any  # JSON-ready (enum values, paths as strings)
    description: str


def _submodel(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def type_name(annotation: Any) -> str:
    """A reader's name of a field's type: ``int``, ``fast | libmypaint``, ``list of float``, ``path or null``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        names = [type_name(a) for a in args if a is not type(None)]
        return " or ".join(names) + (" or null" if type(None) in args else "")
    if origin in (tuple, list):
        element_types = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        return f"list of {type_name(element_types[0])}" if element_types else "list"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return " | ".join(str(m.value) for m in annotation)
    if annotation is Path:
        return "path"
    return getattr(annotation, "__name__", str(annotation))


def _json_default(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def config_keys(model: type[BaseModel] = TrainConfig, prefix: str = "") -> Iterator[ConfigKey]:
    """Every leaf key of ``model``'s tree, depth first in declaration order."""
    for name, field in model.model_fields.items():
        dotted = f"{prefix}{name}"
        sub = _submodel(field.annotation)
        if sub is not None:
            yield from config_keys(sub, dotted + ".")
            continue
        default = field.get_default(call_default_factory=True)
        yield ConfigKey(dotted, type_name(field.annotation), _json_default(default), (field.description or "").strip())


def section_model(path: Sequence[str | int]) -> type[BaseModel] | None:
    """The model of the section at ``path`` (``("env", "mujoco")``); None if it is no section."""
    model: type[BaseModel] = TrainConfig
    for part in path:
        field = model.model_fields.get(str(part))
        sub = None if field is None else _submodel(field.annotation)
        if sub is None:
            return None
        model = sub
    return model


def did_you_mean(loc: Sequence[str | int]) -> str | None:
    """The dotted key closest to the unknown key at ``loc`` (``("env", "gridsize")`` →
    ``env.grid_size``), else None."""
    if not loc:
        return None
    *parents, leaf = (str(p) for p in loc)
    model = section_model(parents)
    if model is None:
        return None
    match = difflib.get_close_matches(leaf, list(model.model_fields), n=1, cutoff=0.6)
    if not match:
        return None
    return ".".join([*parents, match[0]])


def config_yaml(cfg: TrainConfig) -> str:
    """The whole effective config as YAML, in declaration order (what ``-c`` reads back)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def keys_table(keys: Sequence[ConfigKey], width: int = 100) -> str:
    """``spiral config keys``'s text: one block per key: ``key  type  = default`` then the description."""
    lines = []
    for k in keys:
        default = yaml.safe_dump(k.default, default_flow_style=True, allow_unicode=True).strip().removesuffix("...").strip()
        lines.append(f"{k.key}  ({k.type})  default: {default}")
        if k.description:
            lines.append(f"    {k.description}")
    return "\n".join(lines) + "\n"
