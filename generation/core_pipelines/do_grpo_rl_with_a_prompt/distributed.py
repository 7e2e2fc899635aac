"""Several processes (torchrun, `accelerate launch`, `--num-processes N`): every cross-process rule is here.

One run = N processes ("ranks"), one per GPU (or N CPU processes on gloo). Each rank generates and scores
its own share of every step's completions; TRL gathers the rewards and shards the data. The rules:

- The main process (rank 0) is the only writer of the run directory: it prepares it (lock, --fresh, resume
  checks), writes config.resolved.yaml, metrics.jsonl, batches.jsonl, the high-scoring file, summary, plots,
  and publishes checkpoints. The others wait at a barrier whenever the directory changes.
- Each reward call exchanges its step once (`all_gather`, called by rewards/step.py): every rank gets the
  whole step, so a failure on one rank stops every rank at the same step, the scaling functions see whole
  prompt groups (a group can be spread over ranks), the metrics count every completion once, and the main
  process writes each completion once.
- A Ctrl-C / SIGTERM on one rank stops every rank at the same step (run/stop.py).
- Only rank 0 prints to the console (the others' stdout is muted; errors still reach stderr).

Launch details (world size, rank) come from the environment that torchrun / accelerate set, so this module
answers without importing torch on a single process. The collectives use accelerate's PartialState, the
same process group the trainer uses later.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from typing import Any, Iterator, Optional

from generation.errors import UserInputError

ENV_WORLD_SIZE = "WORLD_SIZE"
ENV_RANK = "RANK"


def world_size() -> int:
    """How many processes this run has (1 unless launched with torchrun / accelerate)."""
    return int(os.environ.get(ENV_WORLD_SIZE, "1") or 1)


def rank() -> int:
    """This process's global rank (0 on a single process)."""
    return int(os.environ.get(ENV_RANK, "0") or 0)


def local_rank() -> int:
    """This process's rank on its machine (its GPU index); 0 on a single process."""
    return int(os.environ.get("LOCAL_RANK", "0") or 0)


def is_distributed() -> bool:
    return world_size() > 1


def is_main_process() -> bool:
    """True for the one process that writes the run directory and prints."""
    return rank() == 0


def cuda_available() -> bool:
    """True when torch sees a CUDA GPU (imports torch only if it is installed)."""
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


def _state() -> Any:
    """accelerate's PartialState (created once; it initialises the process group the trainer reuses)."""
    from accelerate import PartialState

    return PartialState(cpu=not cuda_available())


def barrier() -> None:
    """Wait until every rank gets here (a no-op on one process)."""
    if is_distributed():
        _state().wait_for_everyone()


def all_gather(value: Any) -> list[Any]:
    """[value of rank 0, value of rank 1, ...] on every rank; [value] on one process."""
    if not is_distributed():
        return [value]
    _state()
    from accelerate.utils import gather_object

    return gather_object([value])


def broadcast_from_main(value: Any) -> Any:
    """The main process's `value`, on every rank."""
    if not is_distributed():
        return value
    _state()
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([value], from_process=0)[0]


def run_on_main(action: Any) -> Any:
    """Run `action()` on the main process only and hand its result (or its user error) to every rank.

    The others wait meanwhile. A UserInputError raised on the main process is raised on every rank, so all
    exit with status 2 together instead of some waiting forever.
    """
    outcome: tuple[str, Any] = ("ok", None)
    if is_main_process():
        try:
            outcome = ("ok", action())
        except UserInputError as error:
            outcome = ("error", str(error))
            if not is_distributed():
                raise
    kind, payload = broadcast_from_main(outcome)
    if kind == "error":
        raise UserInputError(payload)
    return payload


@contextlib.contextmanager
def main_process_writes() -> Iterator[bool]:
    """`with main_process_writes() as writer:` every rank waits before and after; only rank 0 writes."""
    barrier()
    try:
        yield is_main_process()
    finally:
        barrier()


@contextlib.contextmanager
def console_on_main_only() -> Iterator[None]:
    """Mute stdout on every rank but the main one for the duration (stderr is left alone)."""
    if is_main_process():
        yield
        return
    with open(os.devnull, "w", encoding="utf-8") as sink, contextlib.redirect_stdout(sink):
        yield


def distributed_problem(config: Any, backend_requested: Optional[str] = None) -> Optional[str]:
    """Why this config cannot run with the current number of processes, or None. Checked before any model loads."""
    size = world_size()
    if size == 1:
        return None
    extra = config.training_parameters.model_extra or {}
    tensor_parallel = int(extra.get("vllm_tensor_parallel_size") or 1)
    if config.model.use_vllm != "off" and extra.get("vllm_mode", config.model.vllm_mode) == "colocate" and size % tensor_parallel:
        return (f"training_parameters.vllm_tensor_parallel_size {tensor_parallel} does not divide the {size} processes "
                "of this run (vLLM colocate runs one tensor-parallel group per set of processes)")
    if (backend_requested or config.model.backend) == "unsloth":
        return (f"model.backend 'unsloth' trains on one GPU, and this run has {size} processes: use backend 'auto' "
                "or 'trl' (TRL + PEFT on accelerate) for multi-GPU runs")
    return None


def single_gpu_only_problem() -> Optional[str]:
    """Why Unsloth cannot run this launch (several processes), for backend selection; None on one process."""
    if not is_distributed():
        return None
    return f"Unsloth trains on one GPU and this run has {world_size()} processes, so backend 'auto' uses TRL + PEFT"
