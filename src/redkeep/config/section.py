"""What every section of redkeep.yaml's schema shares: the base model, the value types several
sections use, and models built from the plain dataclasses of `config/defaults.py`."""

import dataclasses
import typing
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    create_model,
    field_validator,
)

from redkeep.errors import UsageError
from redkeep.redis.target import parse_host_port


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @field_validator("*", mode="after")
    @classmethod
    def _one_line(cls, value: object) -> object:
        # Values end up in redis.conf and docker-compose.yml: a line break would inject lines.
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str) and any(char in text for char in "\r\n\0"):
                raise ValueError("must be one line (no line breaks or NUL)")
        return value


def section(defaults: type, **types: Any) -> type[Section]:
    """A Section with the fields of the dataclass `defaults`, in its order, with its defaults,
    descriptions and bounds. `types` replaces a field's type where pydantic checks more than
    the dataclass says (a nested section's model, HOST:PORT); a nested section's default is
    then that model's."""
    hints = typing.get_type_hints(defaults)
    fields: dict[str, Any] = {}
    for item in dataclasses.fields(defaults):
        hint = types.get(item.name, hints[item.name])
        if item.default_factory is not dataclasses.MISSING:
            nested = dataclasses.is_dataclass(item.default_factory)
            info = Field(default_factory=hint if nested else item.default_factory, **item.metadata)
        elif item.default is not dataclasses.MISSING:
            info = Field(item.default, **item.metadata)
        else:
            info = Field(**item.metadata)  # required
        fields[item.name] = (hint, info)
    name = defaults.__name__.removesuffix("Defaults") + "Settings"
    return create_model(name, __base__=Section, **fields)


def _yes_no(value: object) -> object:
    # YAML 1.1 reads a bare yes/no as a boolean.
    if isinstance(value, bool):
        return "yes" if value else "no"
    return value


YesOptionalNo = Annotated[Literal["yes", "optional", "no"], BeforeValidator(_yes_no)]


def _host_port(value: str) -> str:
    try:
        parse_host_port(value)
    except UsageError as error:
        raise ValueError(error.message) from None
    return value


HostPort = Annotated[str, AfterValidator(_host_port)]
