"""Turn pydantic models into a *structural* OpenAPI v3 schema, the dialect CRDs accept.

Pydantic's own ``model_json_schema`` emits ``$ref``/``anyOf``/``null`` types that a CRD rejects, so
this walks the fields directly: types, ``enum``, bounds (``Ge``/``Gt``/``Le``/``Lt``/length/pattern),
defaults and descriptions. Property names are the camelCase aliases. Called by
:mod:`spiral_operator.crd`; pure.
"""

from __future__ import annotations

import enum
import inspect
import types
import typing
from pathlib import PurePath
from typing import Any

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined


class SchemaError(TypeError):
    """A model field has a type this converter cannot express in a structural schema."""


def _doc(cls: type) -> str | None:
    doc = inspect.getdoc(cls)
    if not doc or doc == inspect.getdoc(BaseModel):
        return None
    return doc.split("\n\n")[0].replace("\n", " ")


def _jsonable(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True)
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, PurePath):
        return str(value)
    return value


def _constraints(metadata: list[Any], schema: dict[str, Any]) -> None:
    is_array = schema.get("type") == "array"
    is_object = schema.get("type") == "object"
    for item in metadata:
        if isinstance(item, annotated_types.Ge):
            schema["minimum"] = item.ge
        elif isinstance(item, annotated_types.Gt):
            schema["minimum"] = item.gt
            schema["exclusiveMinimum"] = True
        elif isinstance(item, annotated_types.Le):
            schema["maximum"] = item.le
        elif isinstance(item, annotated_types.Lt):
            schema["maximum"] = item.lt
            schema["exclusiveMaximum"] = True
        elif isinstance(item, annotated_types.MinLen):
            schema["minItems" if is_array else "minProperties" if is_object else "minLength"] = item.min_length
        elif isinstance(item, annotated_types.MaxLen):
            schema["maxItems" if is_array else "maxProperties" if is_object else "maxLength"] = item.max_length
        elif getattr(item, "pattern", None):
            schema["pattern"] = item.pattern


def type_schema(annotation: Any) -> dict[str, Any]:
    """The schema of one Python type (without field-level bounds, default or description).

    Raises:
        SchemaError: an annotation with no structural equivalent.
    """
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        if set(members) == {int, str}:
            return {"x-kubernetes-int-or-string": True}
        if len(members) != 1:
            raise SchemaError(f"union {annotation!r} has no structural schema (only X | None and int | str)")
        schema = type_schema(members[0])
        if len(members) != len(args):
            schema["nullable"] = True
        return schema
    if origin in (list, tuple):
        item = args[0] if args else Any
        array: dict[str, Any] = {"type": "array", "items": type_schema(item)}
        if origin is tuple and args and Ellipsis not in args:
            if len(set(args)) != 1:
                raise SchemaError(f"tuple {annotation!r} mixes item types; a structural array has one")
            array.update(minItems=len(args), maxItems=len(args))  # a fixed-length tuple, e.g. a [low, high] range
        return array
    if origin is dict:
        value = args[1] if len(args) == 2 else Any
        if value is Any:
            return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        return {"type": "object", "additionalProperties": type_schema(value)}
    if annotation is Any:
        return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return model_schema(annotation)
        if issubclass(annotation, enum.Enum):
            return {"type": "string", "enum": [m.value for m in annotation]}
        if issubclass(annotation, bool):
            return {"type": "boolean"}
        if issubclass(annotation, int):
            return {"type": "integer"}
        if issubclass(annotation, float):
            return {"type": "number"}
        if issubclass(annotation, (str, PurePath)):
            return {"type": "string"}
    raise SchemaError(f"type {annotation!r} has no structural schema")


def field_schema(field: FieldInfo) -> dict[str, Any]:
    """Schema of one model field: its type, bounds, default and description."""
    schema = type_schema(field.annotation)
    _constraints(field.metadata, schema)
    if field.description:
        schema["description"] = field.description
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):
            # `{}` lets the API server apply the nested defaults itself; only non-default values are spelled out.
            schema["default"] = value.model_dump(mode="json", by_alias=True, exclude_defaults=True, exclude_none=True)
        else:
            schema["default"] = _jsonable(value)
    elif field.default is not PydanticUndefined and field.default is not None:
        schema["default"] = _jsonable(field.default)
    return schema


def model_schema(cls: type[BaseModel]) -> dict[str, Any]:
    """Structural schema of a pydantic model; properties are named by alias (camelCase)."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, field in cls.model_fields.items():
        key = field.alias or name
        properties[key] = field_schema(field)
        if field.is_required():
            required.append(key)
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    description = _doc(cls)
    if description:
        schema["description"] = description
    return schema
