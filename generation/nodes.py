"""Pipeline nodes that super_config.yaml can name, and the path aliases their configs may use.

A node is a function `run(config_path, overrides, dry_run, fresh, **parameters)`; its module is imported only
when the node runs, so listing nodes stays cheap. It returns an outcome whose `exit_status` (0 when it
finished; see the GRPO node's run_stop.py) the runner exits with; the nodes after a non-zero one are not run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from generation.core_pipelines.do_grpo_rl_with_a_prompt.pipeline import run_grpo_pipeline
from generation.registry import Registry, did_you_mean

NODES: Registry[Callable[..., Any]] = Registry("pipeline node")

# `alias:rest/of/path` in super_config.yaml resolves against these (super_config's path_aliases add more).
DEFAULT_PATH_ALIASES = {
    "grpo-rl-folder": "generation/core_pipelines/do_grpo_rl_with_a_prompt",
}


@NODES.register("grpo-rl-pipeline")
def run_grpo_node(config_path: str, overrides: list[str], dry_run: bool, fresh: bool = False, **parameters: Any) -> Any:
    """The GRPO node (generation/core_pipelines/do_grpo_rl_with_a_prompt)."""
    return run_grpo_pipeline(config_path, overrides=overrides, dry_run=dry_run, fresh=fresh, **parameters)


def resolve_alias_path(value: str, aliases: dict[str, str], root: Path) -> Path:
    """'alias:rest/of/path' -> root/aliased/rest/of/path; other values are paths relative to root."""
    alias, sep, rest = value.partition(":")
    if sep and alias in aliases:
        return root / aliases[alias] / rest
    if sep and len(alias) > 1 and not Path(value).exists():  # 'C:' style drive letters are not aliases
        raise ValueError(f"unknown path alias '{alias}'{did_you_mean(alias, sorted(aliases))} in '{value}'")
    return root / value
