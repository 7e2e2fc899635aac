"""Which columns each reward reads, checked against its dataset's rows at start-up and shown in the plan.

How a reward says what it reads:
- a built-in declares it on the reward it returns: `return reads_columns(reward, ids_column, kwargs_column)`
  (optional ones with `optional=(...)`);
- any other reward says it with the named parameters of the function that scores: `def reward(prompts,
  completions, answer, tags=None, **columns)` reads `answer` and, optionally (it has a default), `tags`.
  TRL's own arguments (prompts, completions, completion_ids, trainer_state, log_metric, ...) are not columns;
  `**columns` reads nothing in particular;
- an LLM judge reads `answer` when its prompt shows {answer}.

A reward that needs a column that no row of its dataset has (a column that is None in every row counts as
absent) is a start-up error, at --dry-run too: exit 2 with one line naming the dataset, the reward, the
column and the columns the rows do have. dataset_settings.eval_path's rows are checked on their own against the
rewards that score them. An optional column is only shown in the plan.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from generation.errors import UserInputError

from ..config.schema import GRPOPipelineConfig
from ..data.columns import RENAMED_PREFIX, TRL_REWARD_ARGUMENTS
from .judge.prompt import placeholders_in
from .plan import RewardPlan

ALWAYS_PRESENT = ("answer", "dataset_name", "source")
"""Columns every row hands to its rewards (answer may be empty: plan.py warns about that)."""
DECLARATION = "reads_columns"

Reward = TypeVar("Reward", bound=Callable)


@dataclass(frozen=True)
class ColumnsRead:
    """The columns a reward reads: `required` ones must exist in its dataset, `optional` ones may."""

    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()

    def describe(self) -> str:
        names = list(self.required) + [f"{name} (optional)" for name in self.optional]
        return ", ".join(names) or "no columns"


def reads_columns(reward: Reward, *required: str, optional: tuple[str, ...] = ()) -> Reward:
    """Declare on `reward` the columns it reads (for built-ins whose columns depend on their settings).

    >>> def reward(prompts, completions, **columns): ...
    >>> columns_read(reads_columns(reward, "instruction_id_list", "kwargs")).describe()
    'instruction_id_list, kwargs'
    """
    setattr(reward, DECLARATION, ColumnsRead(tuple(required), tuple(optional)))
    return reward


def declared_columns(function: Any) -> "ColumnsRead | None":
    """What `function` declared with reads_columns; None when it declared nothing."""
    declared = getattr(function, DECLARATION, None)
    return declared if isinstance(declared, ColumnsRead) else None


def columns_read(function: Any) -> ColumnsRead:
    """The columns `function` reads: its declaration, else its named parameters (see the module doc).

    >>> columns_read(lambda prompts, completions, answer, tags=None, **columns: None)
    ColumnsRead(required=('answer',), optional=('tags',))
    """
    declared = declared_columns(function)
    if declared is not None:
        return declared
    required: list[str] = []
    optional: list[str] = []
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):  # a builtin or C callable: no signature to read
        parameters = []
    for parameter in parameters:
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD) or parameter.name in TRL_REWARD_ARGUMENTS:
            continue
        (required if parameter.default is parameter.empty else optional).append(parameter.name)
    if "answer" not in required and _judge_shows_answer(function):
        required.append("answer")
    return ColumnsRead(tuple(required), tuple(name for name in optional if name not in required))


def _judge_shows_answer(function: Any) -> bool:
    messages = getattr(getattr(function, "prompt", None), "messages", None)
    if not isinstance(messages, (list, tuple)):
        return False
    return any("answer" in placeholders_in(str(m.get("content", ""))) for m in messages if isinstance(m, dict))


def rows_by_dataset(rows: list[dict]) -> dict[str, list[dict]]:
    """Rows grouped by the dataset whose rewards score them (eval_path rows under eval_rewards_from's)."""
    grouped: dict[str, list[dict]] = {}
    for row in rows:
        grouped.setdefault(row["dataset_name"], []).append(row)
    return grouped


def present_columns(rows: list[dict]) -> list[str]:
    """The columns rewards get from these rows: the ones every row has, then those not None in some row."""
    seen = [key for key in (rows[0] if rows else {}) if key not in ALWAYS_PRESENT and key != "prompt"
            and any(row.get(key) is not None for row in rows)]
    return list(ALWAYS_PRESENT) + seen


def check_columns_read(config: GRPOPipelineConfig, rows: list[dict], plan: RewardPlan, origin: str = "") -> None:
    """UserInputError for the first reward that needs a column no row of its dataset has (module doc).

    `origin` names rows checked on their own (dataset_settings.eval_path's, scored by a dataset's rewards)."""
    grouped = rows_by_dataset(rows)
    whose = f"{origin} (scored by the dataset's rewards)" if origin else "the dataset"
    for dataset in config.datasets:
        name = dataset.display_name
        if not grouped.get(name):
            continue  # no rows: nothing is scored
        present = present_columns(grouped[name])
        for reward in plan.per_dataset.get(name, []):
            missing = [column for column in columns_read(reward.function).required if column not in present]
            if missing:
                hint = (f" (the rows' '{missing[0]}' reaches rewards as '{RENAMED_PREFIX}{missing[0]}': TRL or this "
                        "node passes an argument of that name itself)" if RENAMED_PREFIX + missing[0] in present
                        else " (the prompt reaches rewards as 'prompts')" if missing[0] == "prompt" else "")
                raise UserInputError(
                    f"dataset '{name}': reward '{reward.label}' reads column '{missing[0]}', which no row of "
                    f"{whose} has{hint}; its rows have: {', '.join(present)}"
                )


def describe_columns_read(resolved: list) -> str:
    """One plan line: each reward of a dataset with the columns it reads."""
    return "; ".join(f"{reward.label} <- {columns_read(reward.function).describe()}" for reward in resolved)
