"""`python run_augmentoolkit.py --num-processes N [--distributed NAME]`: N local processes through accelerate.

The shortcut builds and runs the `accelerate launch` command a user could type themselves (it is printed, with
the values of secret keys given by --set / --sweep as ***),
with one of the templates in accelerate_configs/ (ddp, zero2, zero3_offload, fsdp) or any accelerate config
file. On a machine without CUDA the processes talk over gloo on the CPU (DDP only). Several machines: run
`accelerate launch` yourself on each (README, "Several GPUs and machines").

The values of secret keys given by --set / --sweep travel to the children in an environment variable
(SECRET_ARGS_ENV), not on their command lines, which every user of the machine can read (`ps`).

The child processes' exit status is handed back through a small file, so a config error in the children
still exits 2, a Ctrl-C 130, and so on, instead of torchrun's generic failure.

Signals: accelerate runs in a session of its own, and the SIGINT, SIGTERM or SIGHUP this launcher gets (a
Ctrl-C in the terminal, `kill PID`, a scheduler, `docker stop`) is passed on to it; torchrun's agent hands
it to every rank, which finishes its step, saves a checkpoint and exits 130 / 143, and the launcher returns
after them. A scheduler that signals every process reaches each rank twice (directly and through the
agent): the second SIGTERM changes nothing (run/stop.py).
The agent waits TORCH_ELASTIC_SHUTDOWN_TIMEOUT seconds for the ranks before it kills them: 600 unless set
(torch's default, 30, is short for a step and a checkpoint of a large model; torch before 2.12 has no
such variable and always waits 30).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional, Sequence

import yaml

from generation.core_pipelines.do_grpo_rl_with_a_prompt.config.redaction import redact_argv, split_secret_args
from generation.core_pipelines.do_grpo_rl_with_a_prompt.distributed import cuda_available, is_main_process
from generation.errors import UserInputError

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES_DIR = ROOT / "accelerate_configs"
STATUS_FILE_ENV = "GRPO_LAUNCH_STATUS_FILE"
SECRET_ARGS_ENV = "GRPO_LAUNCH_SECRET_ARGS"
NEEDS_CUDA = {"DEEPSPEED": "DeepSpeed", "FSDP": "FSDP"}
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
SHUTDOWN_TIMEOUT_ENV = "TORCH_ELASTIC_SHUTDOWN_TIMEOUT"
DEFAULT_SHUTDOWN_TIMEOUT_S = 600


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
    if num_processes < 1:
        raise UserInputError(f"--num-processes must be at least 1, got {num_processes}")
    has_cuda = cuda_available()
    if has_cuda:
        import torch

        if num_processes > torch.cuda.device_count():
            raise UserInputError(f"--num-processes {num_processes}, but only {torch.cuda.device_count()} GPU(s) are visible")
    config_file = resolve_accelerate_config(distributed)
    check_accelerate_config(config_file, has_cuda)
    typed = accelerate_launch_command(num_processes, config_file, script, script_args)  # what a user would type
    print("launching:", " ".join(redact_argv(typed[2:])), flush=True)  # logs keep it: no API key in it
    public_args, secret_args = split_secret_args(list(script_args))
    command = accelerate_launch_command(num_processes, config_file, script, public_args)
    with tempfile.TemporaryDirectory(prefix="grpo-launch-") as folder, forwarding_signals() as forward:
        status_file = Path(folder) / "status"
        environment = {SHUTDOWN_TIMEOUT_ENV: str(DEFAULT_SHUTDOWN_TIMEOUT_S), **os.environ,
                       STATUS_FILE_ENV: str(status_file), SECRET_ARGS_ENV: json.dumps(secret_args)}
        # a session of its own: a signal to our whole process group reaches accelerate once, through us
        process = forward.to(subprocess.Popen(command, env=environment, start_new_session=True))
        process.wait()
        recorded = status_file.read_text().strip() if status_file.is_file() else ""
        if recorded.isdigit():
            return int(recorded)
        return 128 + forward.received[0] if forward.received else (process.returncode or 0)


class SignalForwarder:
    """Passes the signals this process gets on to one child process (kept until it has one)."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self.process: Optional[subprocess.Popen] = None

    def __call__(self, signum: int, frame: object) -> None:
        self.received.append(signum)
        self._send(signum)

    def to(self, process: subprocess.Popen) -> subprocess.Popen:
        self.process = process
        for signum in self.received:  # one that came while the child was being started
            self._send(signum)
        return process

    def _send(self, signum: int) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)


@contextlib.contextmanager
def forwarding_signals():
    """A SignalForwarder handling SIGINT, SIGTERM and SIGHUP for the duration (the old handlers come back)."""
    forwarder = SignalForwarder()
    previous = {signum: signal.signal(signum, forwarder) for signum in FORWARDED_SIGNALS}
    try:
        yield forwarder
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def launcher_secret_args() -> list[str]:
    """The secret --set / --sweep arguments the launcher passed to this process (none when not launched by it),
    taken out of the environment so that the processes this one starts (a local judge server) do not inherit them."""
    return json.loads(os.environ.pop(SECRET_ARGS_ENV, "") or "[]")


def record_exit_status(status: int) -> None:
    """In a launched child: tell the launcher our exit status (the main process only)."""
    target = os.environ.get(STATUS_FILE_ENV)
    if target and is_main_process():
        try:
            Path(target).write_text(str(status))
        except OSError:
            pass
