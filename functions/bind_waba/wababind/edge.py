"""Edge formats validated by pydantic v2's core, without `pydantic.BaseModel` (cold start).

Why not BaseModel: `from pydantic import BaseModel` loads pydantic's model machinery (~70 ms on
FC-sized CPUs, about a fifth of the whole cold start) and building our nine model classes added
~50 ms more, all before the first request. The same validation engine, `pydantic_core`, is
already loaded by `import pydantic`: each format here is one `core_schema` schema compiled once
into a `SchemaValidator`, so errors are the same `pydantic_core.ValidationError` (which IS
`pydantic.ValidationError`) with the same types, locations and messages.

An `Edge` is a small frozen value (fields declared as class annotations, compared and hashed
by value) plus the few BaseModel calls callers and tests use: `model_validate`,
`model_validate_json`, `model_dump(by_alias=...)`, `model_dump_json` and `model_fields`. Not a
`@dataclass`: each dataclass costs ~1 ms to build at import (its generated methods are
`exec`ed), and the schema already fills every field, so one shared `__init__` does.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, ClassVar

from pydantic_core import SchemaValidator, core_schema

Field = core_schema.TypedDictField


def field(
    schema: core_schema.CoreSchema,
    alias: str | None = None,
    *,
    default: Any = dataclasses.MISSING,
    default_factory: Any = None,
) -> Field:
    """One field: its schema, its wire name when that differs, and its default if optional."""
    if default is not dataclasses.MISSING:
        schema = core_schema.with_default_schema(schema, default=default)
    elif default_factory is not None:
        schema = core_schema.with_default_schema(schema, default_factory=default_factory)
    required = default is dataclasses.MISSING and default_factory is None
    return core_schema.typed_dict_field(schema, required=required, validation_alias=alias)


def optional(schema: core_schema.CoreSchema) -> core_schema.CoreSchema:
    """`X | None`, as pydantic builds it (errors name the inner rule)."""
    return core_schema.nullable_schema(schema)


class Edge:
    """Base of the edge formats: subclasses annotate their fields (types only: defaults live in
    the schema, which fills every field), then call `compile`."""

    model_fields: ClassVar[dict[str, str]]  # python name -> wire name
    schema: ClassVar[core_schema.CoreSchema]
    _validator: ClassVar[SchemaValidator]

    @classmethod
    def compile(cls, fields: dict[str, Field], adjust: Any = None) -> None:
        """Build the class's schema: the fields (unknown keys ignored), `adjust`ed, the instance."""

        def build(values: dict[str, Any]) -> Any:
            # The schema filled every field: no keyword round trip through __init__.
            made = object.__new__(cls)
            made.__dict__.update(adjust(values) if adjust is not None else values)
            return made

        cls.model_fields = {
            name: str(spec.get("validation_alias") or name) for name, spec in fields.items()
        }
        cls.schema = core_schema.no_info_after_validator_function(
            build, core_schema.typed_dict_schema(fields, extra_behavior="ignore")
        )
        cls._validator = SchemaValidator(cls.schema)

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)  # frozen: __setattr__ refuses, the dict is written directly

    def __setattr__(self, name: str, value: Any) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.model_fields)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.model_fields)
        return f"{type(self).__name__}({inner})"

    @classmethod
    def model_validate(cls, obj: object, *, context: Any = None) -> Any:
        return cls._validator.validate_python(obj, context=context)

    @classmethod
    def model_validate_json(cls, data: str | bytes, *, context: Any = None) -> Any:
        return cls._validator.validate_json(data, context=context)

    def model_dump(self, *, by_alias: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, wire in self.model_fields.items():
            value = getattr(self, name)
            if isinstance(value, Edge):
                value = value.model_dump(by_alias=by_alias)
            out[wire if by_alias else name] = value
        return out

    def model_dump_json(self, *, by_alias: bool = False) -> str:
        return json.dumps(self.model_dump(by_alias=by_alias), ensure_ascii=False)
