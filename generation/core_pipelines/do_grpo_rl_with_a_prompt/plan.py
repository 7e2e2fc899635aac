"""The run plan that every run (and --dry-run) prints before any model loads: what will be trained, on what,
rewarded how.

`describe_plan` gives the whole plan; its data part (`describe_data`): counts, how each dataset's rows were read,
one sample, and warnings.

For each dataset the plan shows its layout (auto-detected or configured), the columns renamed because TRL
or this node passes a reward argument of that name, the columns each reward reads (rewards/columns.py),
the rows that carry images (trained as text only) and the fields left out (values that are not JSON), and
one sampled prompt (shortened) with its reference answer, so that a user sees what the model will be asked
and what rewards compare against. A dataset whose reference answers are all empty while one of its rewards
reads `answer` gets a warning.

Which rewards read `answer`: the reward says so (`reads_answer = True` on the function), or
rewards/columns.columns_read names it (its declaration, a parameter, an LLM judge whose prompt shows
{answer}), or it declares nothing and is a built-in known to read it (ANSWER_READING_BUILTINS).
"""

from __future__ import annotations

from typing import Any, Optional

from .config.schema import GRPOPipelineConfig
from .data.sampling import SampledData
from .rewards.columns import (
    ALWAYS_PRESENT,
    columns_read,
    declared_columns,
    describe_columns_read,
    present_columns,
    rows_by_dataset,
)
from .rewards.plan import RewardPlan
from .rewards.post_processors import get_combination_function
from .trainer.backends import describe_training_mode
from .trainer.batching import planned_steps
from .trainer.grpo_args import effective_scale_rewards

ANSWER_READING_BUILTINS = frozenset({
    "final_answer_match", "gsm8k_correctness", "gsm8k_reward", "gec_edit_f1", "cosine_scaled_correctness",
})
"""Built-in rewards that compare against the `answer` column (names registered in rewards/builtin/)."""
SAMPLE_CHARS = 160


def describe_plan(config: GRPOPipelineConfig, data: SampledData, plan: RewardPlan, processes: int = 1,
                  notes: tuple[Optional[str], ...] = ()) -> str:
    """The run plan: rows per dataset, rewards per dataset, the effective training parameters, and `notes`
    (settings the launch changed, such as a raised batch)."""
    tp = config.training_parameters
    extras = ", ".join(f"{k}={v}" for k, v in sorted((tp.model_extra or {}).items()))
    epochs = f" (num_train_epochs: about {planned_steps(tp, len(data.train_rows), processes)} steps)" if tp.max_steps < 0 else ""
    lines = [
        "=== GRPO run plan ===",
        f"model: {config.model.base_model_name} (backend {config.model.backend}; {describe_training_mode(config.model)})",
        "data:",
        describe_data(config, data, plan),
        f"rewards (combination '{config.reward.combination_function}', scaling '{config.reward.scaling_function}', "
        f"TRL scale_rewards '{effective_scale_rewards(config)}'):",
        f"  combination: {first_line(get_combination_function(config.reward.combination_function).__doc__)}",
        plan.describe(),
        f"training: max_steps={tp.max_steps}{epochs} lr={tp.learning_rate} batch={tp.per_device_train_batch_size} "
        f"num_generations={tp.num_generations} max_completion_length={tp.max_completion_length} "
        f"max_prompt_length={tp.max_prompt_length} seed={tp.seed}" + (f" {extras}" if extras else ""),
        *[f"note: {note}" for note in notes if note],
        f"output: {tp.output_dir}",
    ]
    return "\n".join(lines)


def describe_data(config: GRPOPipelineConfig, data: SampledData, plan: RewardPlan) -> str:
    """The report's table, then per dataset: layout, renamed columns, one sample; then the warnings."""
    report = data.report
    lines = [report.summary()]
    grouped = rows_by_dataset(data.train_rows + data.eval_rows)
    warnings = []
    for dataset in config.datasets:
        name = dataset.display_name
        lines.append(f"{name}: {report.layouts.get(name, 'no rows read')}")
        if report.renamed_columns.get(name):
            renamed = ", ".join(f"{column[4:]} -> {column}" for column in report.renamed_columns[name])
            lines.append(f"  renamed columns (TRL or this node passes reward arguments of these names): {renamed}")
        rows = grouped.get(name, [])
        columns = [key for key in present_columns(rows) if key not in ALWAYS_PRESENT]
        if columns:
            lines.append(f"  columns for rewards besides answer: {shorten(', '.join(columns))}")
        if report.left_out_columns.get(name):
            lines.append(f"  left out (values that are not JSON: bytes, dates): {', '.join(report.left_out_columns[name])}")
        if report.image_rows.get(name):
            count, places = report.image_rows[name]
            lines.append(f"  images: {count} sampled row(s) carry images ({', '.join(places)}); this node trains on "
                         "text only: the model never sees them")
        if plan.per_dataset.get(name):
            lines.append(f"  rewards read: {describe_columns_read(plan.per_dataset[name])}")
        if rows:
            lines.append(f"  sample prompt: {shorten_messages(rows[0]['prompt'])}")
            lines.append(f"  sample answer: {shorten(rows[0]['answer']) if rows[0]['answer'] else '(empty)'}")
        readers = answer_readers(dataset, plan.per_dataset.get(name, []))
        if rows and readers and not any(str(row["answer"]).strip() for row in rows):
            warnings.append(
                f"warning: dataset '{name}': every reference answer is empty, yet these rewards read `answer` "
                f"and get no signal from it: {', '.join(readers)}; set the dataset's answer_column (a dotted "
                "path such as reward_model.ground_truth)"
            )
    return "\n".join(lines + warnings)


def answer_readers(dataset: Any, resolved: list) -> list[str]:
    """Labels of the dataset's rewards that read the `answer` column (see the module doc)."""
    return [
        reward.label for entry, reward in zip(dataset.reward_funcs, resolved)
        if reads_answer(entry.name, reward.function)
    ]


def reads_answer(name: str, function: Any) -> bool:
    """Whether a reward reads the `answer` column: declared, a known built-in, a parameter, or a judge prompt."""
    declared = getattr(function, "reads_answer", None)
    if declared is not None:
        return bool(declared)
    read = columns_read(function)
    if name in ANSWER_READING_BUILTINS and declared_columns(function) is None:
        return True
    return "answer" in read.required + read.optional


def first_line(docstring: Optional[str]) -> str:
    """A docstring's first sentence line, or '' (the plan's one-line description of a function)."""
    return (docstring or "").strip().splitlines()[0] if (docstring or "").strip() else ""


def shorten(text: Any, limit: int = SAMPLE_CHARS) -> str:
    """One line of at most `limit` characters (newlines shown as ⏎)."""
    flat = str(text).replace("\r\n", "\n").replace("\n", "⏎")
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def shorten_messages(messages: list[dict]) -> str:
    """[role] content | [role] content ..., shortened as a whole."""
    return shorten(" | ".join(f"[{m['role']}] {m['content']}" for m in messages), 2 * SAMPLE_CHARS)
