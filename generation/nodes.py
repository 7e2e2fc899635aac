"""Pipeline nodes that super_config.yaml can name, and the path aliases their configs may use.

A node is a function `run(config_path, overrides, dry_run, fresh, <parameters>)` (importing a node imports no
torch: that waits for its run). It returns an outcome whose `exit_status` (0 when it finished; see the GRPO
node's run/stop.py) the runner exits with; the nodes after a non-zero one are not run.
A super_config step's `parameters` are the node's own keyword arguments (node_parameters), checked before any
node runs; the settings of a run (training_parameters.max_steps, ...) belong in its config file or --set.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable, Optional

from generation.core_pipelines.do_grpo_rl_with_a_prompt.pipeline import run_grpo_pipeline
from generation.registry import Registry, did_you_mean

NODES: Registry[Callable[..., Any]] = Registry("pipeline node")

# `alias:rest/of/path` in super_config.yaml resolves against these (super_config's path_aliases add more).
DEFAULT_PATH_ALIASES = {
    "grpo-rl-folder": "generation/core_pipelines/do_grpo_rl_with_a_prompt",
}


RUNNER_ARGUMENTS = ("config_path", "overrides", "dry_run", "fresh")  # what the runner passes every node


@NODES.register("grpo-rl-pipeline")
def run_grpo_node(config_path: str, overrides: list[str], dry_run: bool, fresh: bool = False,
                  base_dir: Optional[str] = None) -> Any:
    """The GRPO node (generation/core_pipelines/do_grpo_rl_with_a_prompt).

    base_dir: the folder that relative dataset paths and output_dir resolve against (default: the working
    directory).
    """
    return run_grpo_pipeline(config_path, overrides=overrides, dry_run=dry_run, fresh=fresh,
                             base_dir=Path(base_dir) if base_dir else None)


def node_parameters(node: Callable[..., Any]) -> list[str]:
    """The names a super_config step's `parameters` may give `node`: its arguments besides the runner's."""
    return [name for name, p in inspect.signature(node).parameters.items()
            if name not in RUNNER_ARGUMENTS and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def check_node_parameters(name: str, parameters: dict[str, Any]) -> None:
    """ValueError naming each parameter node `name` does not take, and the ones it does."""
    node = NODES.get(name)
    if any(p.kind is p.VAR_KEYWORD for p in inspect.signature(node).parameters.values()):
        return
    accepted = node_parameters(node)
    unknown = sorted(set(parameters) - set(accepted))
    if unknown:
        raise ValueError(f"node '{name}' takes no {', '.join(map(repr, unknown))}; its parameters: "
                         f"{', '.join(accepted) or 'none'} (settings of the run, such as "
                         "training_parameters.max_steps, go in its config file or --set)")


def resolve_alias_path(value: str, aliases: dict[str, str], root: Path) -> Path:
    """'alias:rest/of/path' -> root/aliased/rest/of/path; other values are paths relative to root."""
    alias, sep, rest = value.partition(":")
    if sep and alias in aliases:
        return root / aliases[alias] / rest
    if sep and len(alias) > 1 and not Path(value).exists():  # 'C:' style drive letters are not aliases
        raise ValueError(f"unknown path alias '{alias}'{did_you_mean(alias, sorted(aliases))} in '{value}'")
    return root / value
