"""`python run_augmentoolkit.py --num-processes N [--distributed NAME]`: N local processes through accelerate.

The shortcut builds and runs the `accelerate launch` command a user could type themselves (it is printed),
with one of the templates in accelerate_configs/ (ddp, zero2, zero3_offload, fsdp) or any accelerate config
file. On a machine without CUDA the processes talk over gloo on the CPU (DDP only). Several machines: run
`accelerate launch` yourself on each (README, "Several GPUs and machines").

The child processes' exit status is handed back through a small file, so a config error in the children
still exits 2, a Ctrl-C 130, and so on, instead of torchrun's generic failure.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional, Sequence

from generation.errors import UserInputError

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES_DIR = ROOT / "accelerate_configs"
STATUS_FILE_ENV = "GRPO_LAUNCH_STATUS_FILE"
NEEDS_CUDA = {"DEEPSPEED": "DeepSpeed", "FSDP": "FSDP"}


def template_names() -> list[str]:
    """The shipped accelerate config templates (file stems in accelerate_configs/)."""
    return sorted(path.stem for path in TEMPLATES_DIR.glob("*.yaml"))


def resolve_accelerate_config(name_or_path: Optional[str]) -> Path:
    """A template name (ddp, zero2, zero3_offload, fsdp) or a path to an accelerate config file."""
    if not name_or_path:
        return TEMPLATES_DIR / "ddp.yaml"
    if (TEMPLATES_DIR / f"{name_or_path}.yaml").is_file():
        return TEMPLATES_DIR / f"{name_or_path}.yaml"
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path.resolve()
    raise UserInputError(
        f"--distributed '{name_or_path}' is neither a template ({', '.join(template_names())}) nor an "
        "accelerate config file that exists"
    )


def check_accelerate_config(path: Path, has_cuda: bool) -> str:
    """The config's distributed_type, after checking this machine can run it (raises UserInputError)."""
    import yaml

    try:
        settings = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise UserInputError(f"{path}: not a readable accelerate config: {error}") from None
    if not isinstance(settings, dict):
        raise UserInputError(f"{path}: expected an accelerate config mapping (run `accelerate config` to write one)")
    kind = str(settings.get("distributed_type", "NO")).upper()
    if kind in NEEDS_CUDA and not has_cuda:
        raise UserInputError(f"{path}: {NEEDS_CUDA[kind]} needs NVIDIA GPUs, and none is visible; on CPU use --distributed ddp")
    if kind == "DEEPSPEED" and importlib.util.find_spec("deepspeed") is None:
        raise UserInputError(f"{path}: DeepSpeed is not installed: bash linux.sh --deepspeed "
                             "(or pip install -r requirements-deepspeed.txt)")
    return kind


def accelerate_launch_command(num_processes: int, config_file: Path, script: Path, script_args: Sequence[str]) -> list[str]:
    """The `accelerate launch` command line for N processes on this machine."""
    return [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(config_file),
        "--num_processes", str(num_processes),
        "--num_machines", "1",
        str(script), *script_args,
    ]


def launch_processes(num_processes: int, distributed: Optional[str], script: Path, script_args: Sequence[str]) -> int:
    """Run `script script_args` in `num_processes` processes; returns the run's exit status."""
    from generation.core_pipelines.do_grpo_rl_with_a_prompt.backends import cuda_available

    if num_processes < 1:
        raise UserInputError(f"--num-processes must be at least 1, got {num_processes}")
    has_cuda = cuda_available()
    if has_cuda:
        import torch

        if num_processes > torch.cuda.device_count():
            raise UserInputError(f"--num-processes {num_processes}, but only {torch.cuda.device_count()} GPU(s) are visible")
    config_file = resolve_accelerate_config(distributed)
    check_accelerate_config(config_file, has_cuda)
    command = accelerate_launch_command(num_processes, config_file, script, script_args)
    print("launching:", " ".join(command[2:] if command[1] == "-m" else command), flush=True)
    with tempfile.TemporaryDirectory(prefix="grpo-launch-") as folder:
        status_file = Path(folder) / "status"
        environment = {**os.environ, STATUS_FILE_ENV: str(status_file)}
        process = subprocess.Popen(command, env=environment)
        while process.poll() is None:
            try:
                process.wait()
            except KeyboardInterrupt:
                pass  # the launcher got the same Ctrl-C: it stops the ranks, which save a checkpoint first
        recorded = status_file.read_text().strip() if status_file.is_file() else ""
        return int(recorded) if recorded.isdigit() else (process.returncode or 0)


def record_exit_status(status: int) -> None:
    """In a launched child: tell the launcher our exit status (the main process only)."""
    target = os.environ.get(STATUS_FILE_ENV)
    if target and os.environ.get("RANK", "0") == "0":
        try:
            Path(target).write_text(str(status))
        except OSError:
            pass
