"""Run the pipeline nodes listed in super_config.yaml, in order.

    python run_augmentoolkit.py                       # every node in super_config.yaml
    python run_augmentoolkit.py --dry-run             # validate config, sample data, resolve rewards; no model
    python run_augmentoolkit.py --node grpo-rl-pipeline --config my_grpo.yaml --set training_parameters.max_steps=5
    python run_augmentoolkit.py --sweep training_parameters.learning_rate=1e-5,3e-5 --sweep model.lora_rank=8,16
    python run_augmentoolkit.py --num-processes 4 [--distributed zero2]   # 4 processes (GPUs) through accelerate

Exit status: 0 done; 1 a run stopped early (a judge that keeps failing, a reward past its time limit or
broken: a checkpoint was saved) or crashed; 2 bad configuration or input (nothing was written); 130 Ctrl-C
(143 SIGTERM) after the checkpoint. A non-zero node status stops the nodes (and sweep points) after it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from generation.core_pipelines.do_grpo_rl_with_a_prompt.config.schema import ConfigError  # noqa: E402
from generation.core_pipelines.do_grpo_rl_with_a_prompt.config.files import read_yaml  # noqa: E402
from generation.core_pipelines.do_grpo_rl_with_a_prompt.config.redaction import redact_argv  # noqa: E402
from generation.nodes import DEFAULT_PATH_ALIASES, NODES, check_node_parameters, resolve_alias_path  # noqa: E402
from generation.errors import UserInputError  # noqa: E402
from generation.registry import UnknownNameError  # noqa: E402
from generation.sweep import expand_sweep, run_name_for  # noqa: E402
from generation.launch import launch_processes, launcher_secret_args, record_exit_status  # noqa: E402
from generation.core_pipelines.do_grpo_rl_with_a_prompt.distributed import (  # noqa: E402
    console_on_main_only, is_distributed, is_main_process,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--super-config", default=str(ROOT / "super_config.yaml"), help="the node list to run")
    parser.add_argument("--node", help="run one node directly (with --config) instead of super_config.yaml")
    parser.add_argument("--config", help="config file for --node")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a config value (repeatable); the value is parsed as YAML")
    parser.add_argument("--dry-run", action="store_true", help="validate and print the plan without training")
    parser.add_argument("--sweep", action="append", default=[], metavar="SECTION.KEY=V1,V2",
                        help="run the grid of these values (repeatable), each in its own run directory, "
                        "then print a comparison table")
    parser.add_argument("--fresh", action="store_true",
                        help="start over instead of resuming (an existing run directory is moved aside)")
    parser.add_argument("--num-processes", type=int, default=None, metavar="N",
                        help="launch N processes on this machine through accelerate (one per GPU; gloo on CPU)")
    parser.add_argument("--distributed", default=None, metavar="NAME|FILE",
                        help="with --num-processes: an accelerate config template (ddp, zero2, zero3_offload, fsdp; "
                        "default ddp) or an accelerate config file")
    return parser.parse_args(argv)


def planned_nodes(args: argparse.Namespace) -> list[tuple[str, Path, dict]]:
    """(node name, config path, parameters) for each node to run, all names and paths checked."""
    if args.node or args.config:
        if not (args.node and args.config):
            raise ConfigError("--node and --config go together")
        entries = [{"node": args.node, "config": args.config}]
        aliases = dict(DEFAULT_PATH_ALIASES)
        base, source = Path.cwd(), "--node/--config"
    else:
        super_path = Path(args.super_config)
        super_config = read_yaml(super_path) or {}
        if not isinstance(super_config, dict) or not isinstance(super_config.get("pipeline_order"), list):
            raise ConfigError(f"{super_path}: expected 'pipeline_order: [{{node, config, parameters?}}, ...]'")
        unknown = sorted(set(super_config) - {"pipeline_order", "path_aliases"})
        if unknown:
            raise ConfigError(f"{super_path}: unknown top-level key(s) {unknown}; valid: pipeline_order, path_aliases")
        entries = super_config["pipeline_order"]
        extra_aliases = super_config.get("path_aliases") or {}
        if not isinstance(extra_aliases, dict) or not all(isinstance(v, str) for v in extra_aliases.values()):
            raise ConfigError(f"{super_path}: path_aliases must map alias names to folders, e.g. "
                              f"'path_aliases: {{my-folder: path/to/folder}}', got {extra_aliases!r}")
        aliases = {**DEFAULT_PATH_ALIASES, **{str(k): v for k, v in extra_aliases.items()}}
        base, source = ROOT, str(super_path)
    plan = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or "node" not in entry or "config" not in entry:
            raise ConfigError(f"{source}: pipeline_order[{index}]: expected a mapping with 'node' and 'config'")
        extra = sorted(set(entry) - {"node", "config", "parameters"})
        if extra:
            raise ConfigError(f"{source}: pipeline_order[{index}]: unknown key(s) {extra}; a step holds node, config "
                              "and optionally parameters (the node's own arguments); settings of the run, such as "
                              "training_parameters.max_steps, go in its config file or --set")
        for key, kind, shape in (("node", str, "a node name"), ("config", str, "a config path"),
                                 ("parameters", (dict, type(None)), "a mapping")):
            if not isinstance(entry.get(key), kind):
                raise ConfigError(f"{source}: pipeline_order[{index}].{key}: expected {shape}, got {entry.get(key)!r}")
        try:
            NODES.get(entry["node"])
            config_path = resolve_alias_path(str(entry["config"]), aliases, base)
        except (UnknownNameError, ValueError) as error:
            raise ConfigError(f"{source}: pipeline_order[{index}]: {error}") from None
        try:
            check_node_parameters(entry["node"], entry.get("parameters") or {})
        except ValueError as error:
            raise ConfigError(f"{source}: pipeline_order[{index}].parameters: {error}") from None
        plan.append((entry["node"], config_path, dict(entry.get("parameters") or {})))
    return plan


def main(argv: list[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(given + launcher_secret_args())
    if args.num_processes is not None and not is_distributed():
        return launch(args, given)
    if args.distributed and args.num_processes is None:
        print("error: --distributed goes with --num-processes (or use `accelerate launch --config_file ...`)",
              file=sys.stderr)
        return 2
    if argv is None:
        sys.argv[1:] = redact_argv(sys.argv[1:])  # wandb records the command line: no API key in it
    with console_on_main_only():  # several processes: only rank 0 prints
        status = run_nodes(args)
    record_exit_status(status)
    return status


def launch(args: argparse.Namespace, argv: list[str]) -> int:
    """Re-run this command in --num-processes processes through accelerate (see generation/launch.py)."""
    try:
        for _, config_path, _ in planned_nodes(args):  # bad paths and names exit 2 before anything starts
            read_yaml(config_path)
        entry = Path(sys.argv[0]) if sys.argv[0].endswith(".py") and Path(sys.argv[0]).is_file() else Path(__file__)
        return launch_processes(args.num_processes, args.distributed, entry.resolve(), strip_launch_flags(argv))
    except UserInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def strip_launch_flags(argv: list[str]) -> list[str]:
    """argv without --num-processes / --distributed (the children must not launch again)."""
    kept, skip = [], False
    for item in argv:
        if skip:
            skip = False
            continue
        if item in ("--num-processes", "--distributed"):
            skip = True
            continue
        if item.startswith(("--num-processes=", "--distributed=")):
            continue
        kept.append(item)
    return kept


def run_nodes(args: argparse.Namespace) -> int:
    """Run every planned node in turn; the exit status of the first one that did not finish, else 0."""
    try:
        plan = planned_nodes(args)
        if args.sweep:
            return run_sweep(args, plan)
        for index, (node_name, config_path, parameters) in enumerate(plan):
            print(f"=== node {node_name}: {config_path}")
            outcome = NODES.get(node_name)(str(config_path), overrides=args.overrides, dry_run=args.dry_run,
                                           fresh=args.fresh, **parameters)
            status = node_exit_status(outcome)
            if status:
                return report_stop(f"node {node_name}", status, skipped=len(plan) - index - 1, what="node")
    except UserInputError as error:
        if is_main_process():  # every rank gets the same error: say it once
            print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


def node_exit_status(outcome: object) -> int:
    """A node's exit status: its outcome's `exit_status` (0 when it has none, e.g. a dry run)."""
    return int(getattr(outcome, "exit_status", 0) or 0)


def report_stop(name: str, status: int, skipped: int, what: str) -> int:
    """Say that `name` did not finish (and what is not run because of it); returns `status`."""
    later = f"; the {skipped} later {what}(s) were not run" if skipped else ""
    print(f"{name} did not finish (exit status {status}){later}", file=sys.stderr)
    return status


def run_sweep(args: argparse.Namespace, plan: list[tuple[str, Path, dict]]) -> int:
    """Run each node once per grid point, each in `<output_dir>/<combination>`, then compare the runs."""
    from generation.core_pipelines.do_grpo_rl_with_a_prompt.config.files import load_config

    grid = expand_sweep(args.sweep)
    runs = []  # (node, config path, parameters, combination, run directory): every config loaded up front
    for node_name, config_path, parameters in plan:
        base_output = load_config(config_path, args.overrides).training_parameters.output_dir
        runs += [(node_name, config_path, parameters, combination, f"{base_output}/{run_name_for(combination)}")
                 for combination in grid]
    run_dirs, status = [], 0
    for node_name, config_path, parameters, combination, run_dir in runs:
        overrides = [*args.overrides, *combination, f"training_parameters.output_dir={run_dir}"]
        print(f"=== sweep {node_name}: {' '.join(combination)} -> {run_dir}")
        outcome = NODES.get(node_name)(str(config_path), overrides=overrides, dry_run=args.dry_run, fresh=args.fresh,
                                       **parameters)
        run_dirs.append(run_dir)
        status = node_exit_status(outcome)
        if status:
            break
    if not args.dry_run:
        from cli_utils.compare_runs import compare_runs

        print(compare_runs([Path(d) for d in run_dirs]))
    if status:
        return report_stop(f"sweep run {run_dirs[-1]}", status, skipped=len(runs) - len(run_dirs), what="sweep run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
