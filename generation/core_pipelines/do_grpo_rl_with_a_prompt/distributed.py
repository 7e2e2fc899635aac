"""Several processes (torchrun, `accelerate launch`, `--num-processes N`): every cross-process rule is here.

One run = N processes ("ranks"), one per GPU (or N CPU processes on gloo). Each rank generates and scores
its own share of every step's completions; TRL gathers the rewards and shards the data. The rules:

- The main process (rank 0) is the only writer of the run directory: it prepares it (lock, --fresh, resume
  checks), writes config.resolved.yaml, metrics.jsonl, batches.jsonl, the high-scoring file, summary, plots,
  and publishes checkpoints. The others wait at a barrier whenever the directory changes.
- What a step scored on every rank is gathered to the main process and written there once.
- Rewards that compare completions of a prompt group (group_standardize, rank, rloo, ...) see the whole
  step's batch: a group can be spread over ranks.
- Decisions are taken together: a judge failure or a Ctrl-C on one rank stops every rank at the same step.
- Only rank 0 prints to the console (the others' stdout is muted; errors still reach stderr).

Launch details (world size, rank) come from the environment that torchrun / accelerate set, so this module
answers without importing torch on a single process. The collectives use accelerate's PartialState, the
same process group the trainer uses later.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Awaitable, Iterator, Optional

ENV_WORLD_SIZE = "WORLD_SIZE"
ENV_RANK = "RANK"


def world_size() -> int:
    """How many processes this run has (1 unless launched with torchrun / accelerate)."""
    return int(os.environ.get(ENV_WORLD_SIZE, "1") or 1)


def rank() -> int:
    """This process's global rank (0 on a single process)."""
    return int(os.environ.get(ENV_RANK, "0") or 0)


def is_distributed() -> bool:
    return world_size() > 1


def is_main_process() -> bool:
    """True for the one process that writes the run directory and prints."""
    return rank() == 0


def _state() -> Any:
    """accelerate's PartialState (created once; it initialises the process group the trainer reuses)."""
    from accelerate import PartialState

    from .trainer.backends import cuda_available

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
    from generation.errors import UserInputError

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


async def score_on_every_rank(scoring: Awaitable[Any]) -> Any:
    """Await one step's scoring on every rank together: when it fails on any rank, it fails on all.

    A rank whose judge gave up must not leave the others waiting in the next collective: they raise too, so
    every rank saves the same checkpoint and stops (a RunStopError), or crashes together (any other error).
    """
    if not is_distributed():
        return await scoring
    result, failure = None, None
    try:
        result = await scoring
    except Exception as error:  # re-raised below, on this rank and (as a copy) on the others
        failure = error
    from .run.stop import RunStopError

    reports = all_gather(None if failure is None else (isinstance(failure, RunStopError), f"{failure}"))
    if failure is not None:
        raise failure
    for index, report in enumerate(reports):
        if report is not None:
            stops, message = report
            raise (RunStopError if stops else RuntimeError)(f"rank {index}: {message}")
    return result


def gather_step(values: list, groups: list) -> tuple[list, list, int]:
    """The whole step's values and their prompt-group ids (every rank's, in rank order), and where this
    rank's part starts: one collective. On one process: the inputs themselves and 0."""
    if not is_distributed():
        return list(values), list(groups), 0
    parts = all_gather((list(values), list(groups)))
    start = sum(len(part_values) for part_values, _ in parts[: rank()])
    return [v for part, _ in parts for v in part], [g for _, part in parts for g in part], start


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
