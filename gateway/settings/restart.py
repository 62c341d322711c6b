"""Settings that only a restart applies: marked on their fields, found and compared here."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class RestartOnly:
    """Marks a field that only a restart applies: `Annotated[int, RestartOnly]`. A reload
    that changes it keeps the value the process started with, and says so."""


def restart_only_keys(model: type[BaseModel]) -> tuple[str, ...]:
    """The dotted keys of the model's restart-only fields, at any depth, in the file's order."""
    keys: list[str] = []
    for name, field in model.model_fields.items():
        section = field.annotation
        if RestartOnly in field.metadata:
            keys.append(name)
        elif isinstance(section, type) and issubclass(section, BaseModel):
            keys.extend(f"{name}.{key}" for key in restart_only_keys(section))
    return tuple(keys)


def changed_restart_only(before: BaseModel, after: BaseModel) -> list[str]:
    """The restart-only keys whose value differs between two settings of one model."""
    return [
        key for key in restart_only_keys(type(before)) if _value(before, key) != _value(after, key)
    ]


def _value(settings: BaseModel, key: str) -> Any:
    value: Any = settings
    for name in key.split("."):
        value = getattr(value, name)
    return value
