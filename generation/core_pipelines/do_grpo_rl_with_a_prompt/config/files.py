"""Reading a config file: YAML in, --set overrides applied, the schema (schema.py) validated; every problem a
ConfigError that names the file (or the --set argument) and the key path, with a did-you-mean hint."""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from generation.errors import UserInputError
from generation.registry import did_you_mean

from .schema import ConfigError, GRPOPipelineConfig


def load_config(path: str | Path, overrides: list[str] | None = None) -> GRPOPipelineConfig:
    """Read, override (`section.key=value`, values parsed as YAML) and validate a config file.

    Raises ConfigError with the file, the key path and a did-you-mean hint on any problem.
    """
    path = Path(path)
    raw = read_yaml(path)
    if raw is None:
        raise ConfigError(f"{path}: the file is empty; a config needs at least model.base_model_name and datasets")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (training_parameters, model, datasets, ...) at the "
                          f"top level, got a {type(raw).__name__}")
    for override in overrides or []:
        apply_override(raw, override)
    return validate_config(raw, source=str(path))


def read_yaml(path: Path) -> Any:
    """Parse a YAML file; a syntax error, non-UTF-8 text or an unreadable file becomes a ConfigError naming it."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}" + (" (it is a directory)" if path.is_dir() else ""))
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        line = error.object[:error.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text (byte 0x{error.object[error.start]:02x} at offset "
                          f"{error.start}): save the file as UTF-8") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the file: {error.strerror or error}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(f"{where}: YAML syntax error: {problem}") from None


def apply_override(raw: dict, override: str) -> None:
    """Apply one `a.b.c=value` override to the raw config mapping (value parsed as YAML; list items by index).

    A bad path (an index past the end, a key under a plain value) or a value that is not YAML is a ConfigError
    naming the --set argument.
    """
    if "=" not in override:
        raise ConfigError(f"--set expects section.key=value, got '{override}'")
    dotted, value_text = override.split("=", 1)
    dotted = dotted.strip()
    keys = dotted.split(".")
    if not all(keys):
        raise ConfigError(f"--set {dotted}: empty key in the path (write section.key=value)")
    try:
        value = yaml.safe_load(value_text) if value_text.strip() else ""
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"--set {dotted}: the value is not valid YAML ({problem}); quote it, e.g. "
                          f"--set '{dotted}=\"...\"'") from None
    target: Any = raw
    for depth, key in enumerate(keys):
        where = ".".join(keys[:depth]) or "the config"
        last = depth == len(keys) - 1
        if isinstance(target, list):
            if not key.isdigit() or int(key) >= len(target):
                raise ConfigError(f"--set {dotted}: {where} is a list of {len(target)} item(s): use an index from 0 to "
                                  f"{len(target) - 1}, got '{key}'")
            index: Any = int(key)
        elif isinstance(target, dict):
            index = key
            if not last and target.get(key) is None:
                target[key] = {}
        else:
            raise ConfigError(f"--set {dotted}: {where} is a plain value ({target!r}), not a section with keys")
        if last:
            target[index] = value
        else:
            target = target[index]


@contextmanager
def naming_the_file(path: str | Path):
    """Re-raise a UserInputError from config-time checks (rewards, backend, GRPOConfig) with the config file named."""
    try:
        yield
    except UserInputError as error:
        if str(path) not in str(error):
            error.args = (f"{path}: {error}", *error.args[1:])
        raise


def validate_config(raw: dict, source: str = "<config>") -> GRPOPipelineConfig:
    """Validate a raw mapping; every problem is reported at once, each with its key path."""
    try:
        return GRPOPipelineConfig.model_validate(raw)
    except ValidationError as error:
        lines = [f"{source}: {error.error_count()} problem(s) in the config:"]
        lines += [f"  - {_describe(item)}" for item in error.errors()]
        raise ConfigError("\n".join(lines)) from None


def _describe(item: dict) -> str:
    location = ".".join(str(part) for part in item["loc"])
    if item["type"] == "extra_forbidden":
        key = str(item["loc"][-1])
        model = _model_at(item["loc"][:-1])
        hint = did_you_mean(key, sorted(model.model_fields)) if model else ""
        return f"{location}: unknown key{hint}"
    message = item["msg"].removeprefix("Value error, ")
    named = re.match(r"([a-z_][a-z0-9_]*): ", message)  # a section's validator naming one of its keys
    if named and location and not location.endswith(named.group(1)):
        location, message = f"{location}.{named.group(1)}", message[named.end():]
    return f"{location or '(top level)'}: {message}"


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The schema class that owns the mapping at `loc` (to suggest valid keys)."""
    model: Any = GRPOPipelineConfig
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if model else None
        if field is None:
            return None
        annotation = field.annotation
        for candidate in getattr(annotation, "__args__", ()) + (annotation,):
            inner = getattr(candidate, "__args__", (candidate,))[0] if hasattr(candidate, "__args__") else candidate
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                model = inner
                break
        else:
            return None
    return model
