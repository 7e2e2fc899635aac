"""Importing the user's reward code: `reward.modules` and dotted import paths in `reward_funcs`.

Two ways reward code outside the package reaches a run:
- `reward.modules: [my_rewards.py, my_lib.rewards]`: files (a path ending in .py, relative to the config
  file's folder, then to the working directory) or module names, imported before the rewards are resolved, so
  the `@register_reward_function` rewards they define can be named like the built-in ones;
- a `reward_funcs` name that is a dotted import path (`trl.rewards.think_format_reward`,
  `my_rewards.brevity`), resolved like TRL's `grpo` script: import the module, take the attribute.

The working directory and the config file's folder are importable (added to the end of `sys.path`, so they
never hide an installed package). A .py file is imported under its own name from its folder, so a file in
`reward.modules` and a dotted path into it are the same module (its rewards register once). Anything that
fails (no such file, module or attribute, an error while importing) is a UserInputError naming what was
asked for, with the nearest names.
"""

from __future__ import annotations

import difflib
import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable, Sequence

from generation.errors import UserInputError
from generation.registry import did_you_mean


def importable_dirs(config_dir: Path | None) -> list[Path]:
    """The folders user reward code is found in: the config file's folder, then the working directory."""
    dirs = [Path(config_dir).resolve()] if config_dir is not None else []
    cwd = Path.cwd().resolve()
    return dirs + ([cwd] if cwd not in dirs else [])


def make_importable(dirs: Iterable[Path]) -> None:
    """Append each folder to sys.path once (at the end: an installed package of the same name still wins)."""
    for folder in dirs:
        if str(folder) not in sys.path:
            sys.path.append(str(folder))


def import_reward_modules(entries: Sequence[str], dirs: Sequence[Path]) -> list[ModuleType]:
    """Import each `reward.modules` entry (a .py file or a module name); UserInputError naming the entry."""
    make_importable(dirs)
    modules = []
    for entry in entries:
        if entry.endswith(".py") or "/" in entry or "\\" in entry:
            file = _find_file(entry, dirs)
            loaded = _loaded_from(file)  # e.g. the node's own reward_functions.py: never imported twice
            if loaded is not None:
                modules.append(loaded)
                continue
            make_importable([file.parent])
            modules.append(_import(file.stem, f"reward.modules: '{entry}'", expected_file=file))
        else:
            modules.append(_import(entry, f"reward.modules: '{entry}'"))
    return modules


def import_object(path: str, dirs: Sequence[Path], known: Sequence[str]) -> Any:
    """The object a dotted path names (`package.module.attribute`), as TRL's grpo script finds it.

    UserInputError when the module cannot be imported or lacks the attribute, with the nearest attribute of
    that module and the nearest of `known` (the registered reward names).
    """
    make_importable(dirs)
    module_name, _, attribute = path.rpartition(".")
    nearest = _nearest_registered(attribute or path, known)
    if not module_name or not attribute:
        raise UserInputError(f"reward function '{path}' is not a registered name or a dotted import path{nearest}")
    where = f" (looked in the installed packages and {', '.join(str(d) for d in dirs)})"
    module = _import(module_name, f"reward function '{path}'", hint=f"{where}{nearest}")
    if not hasattr(module, attribute):
        here = did_you_mean(attribute, [name for name in dir(module) if not name.startswith("_")])
        raise UserInputError(f"reward function '{path}': module '{module_name}' has no attribute '{attribute}'"
                             f"{here}{nearest}")
    return getattr(module, attribute)


def _nearest_registered(name: str, known: Sequence[str]) -> str:
    """'; nearest registered rewards: a, b' (or all of them when none is close)."""
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
    return f"; nearest registered rewards: {', '.join(close)}" if close else f"; registered rewards: {', '.join(known)}"


def _find_file(entry: str, dirs: Sequence[Path]) -> Path:
    path = Path(entry).expanduser()
    candidates = [path] if path.is_absolute() else [folder / path for folder in dirs]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise UserInputError(f"reward.modules: file '{entry}' not found (tried {', '.join(str(c) for c in candidates)})")


def _loaded_from(file: Path) -> ModuleType | None:
    """The module already imported from `file` (under whatever name), or None."""
    for module in list(sys.modules.values()):
        found = getattr(module, "__file__", None)
        if found and Path(found).resolve() == file:
            return module
    return None


def _import(name: str, what: str, expected_file: Path | None = None, hint: str = "") -> ModuleType:
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name and (name == error.name or name.startswith(error.name + ".")):  # the module itself is missing
            raise UserInputError(f"{what}: no module named '{error.name}'{hint}") from None
        raise UserInputError(f"{what}: importing '{name}' raised ModuleNotFoundError: {error}") from error
    except UserInputError:
        raise
    except Exception as error:  # the user's module raised while importing: say which and what
        raise UserInputError(f"{what}: importing '{name}' raised {type(error).__name__}: {error}") from error
    found = getattr(module, "__file__", None)
    if expected_file is not None and (found is None or Path(found).resolve() != expected_file):
        raise UserInputError(f"{what}: the module name '{name}' is already taken by {found or 'a built-in module'}; "
                             "rename the file")
    return module
