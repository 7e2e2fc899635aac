"""Helpers the built-in rewards share: reading completions, prompts and columns defensively."""

from __future__ import annotations

import logging
from typing import Any, Sequence

from ..reasoning_text import strip_reasoning


def as_text(completion: Any) -> str:
    """A completion as plain text: strings pass through, None is '', a chat message list gives its last content."""
    if completion is None:
        return ""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return str(completion.get("content") or "")
    if isinstance(completion, (list, tuple)):
        return as_text(completion[-1]) if completion else ""
    return str(completion)


def answer_text(completion: Any, cot_start: str | None = None, cot_end: str | None = None) -> str:
    """What a reader of the completion sees: the text after cot_end (the whole text when cot_end is unset or absent)."""
    return strip_reasoning(as_text(completion), cot_start, cot_end)


def last_user_message(prompt: Any) -> str:
    """The content of the prompt's last user message (the last message when none is a user's; a string prompt as is)."""
    if prompt is None:
        return ""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, dict):
        return str(prompt.get("content") or "")
    messages = [m for m in prompt if isinstance(m, dict)] if isinstance(prompt, (list, tuple)) else []
    users = [m for m in messages if m.get("role") == "user"]
    chosen = users[-1] if users else (messages[-1] if messages else None)
    return str(chosen.get("content") or "") if chosen else ""


def column(columns: dict[str, Any], name: str, count: int) -> Sequence[Any]:
    """The column `name` as a list of `count` values ('' for each row when the column is missing)."""
    values = columns.get(name)
    if values is None:
        return [""] * count
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        return [values] * count
    if len(values) != count:
        raise ValueError(f"column '{name}' has {len(values)} values for {count} completions")
    return values


class UnparsedReferenceCounter:
    """Counts rows whose reference answer a reward cannot read, logs `rewards/<name>/unparsed_reference` through
    TRL's `log_metric` column (TRL >= 1.14) and warns once per reward, so a broken reference column is seen.

    >>> counter = UnparsedReferenceCounter("final_answer_match")
    >>> logged = {}
    >>> counter.report(["x^2", None], {"log_metric": lambda name, value: logged.update({name: value})})
    >>> logged
    {'rewards/final_answer_match/unparsed_reference': 1.0}
    """

    def __init__(self, name: str, what: str = "has no answer this reward can read"):
        self.name, self.what, self.warned = name, what, False

    def report(self, unparsed: Sequence[Any], columns: dict[str, Any]) -> None:
        """`unparsed`: one entry per row, None where the reference was read, else the unreadable reference."""
        bad = [reference for reference in unparsed if reference is not None]
        log_metric = columns.get("log_metric")
        if callable(log_metric):
            log_metric(f"rewards/{self.name}/unparsed_reference", float(len(bad)))
        if bad and not self.warned:
            self.warned = True
            logging.getLogger(__name__).warning(
                "%s: %d of %d references in this batch %s (scored None, counted as rewards/%s/unparsed_reference); "
                "first: %r", self.name, len(bad), len(unparsed), self.what, self.name, str(bad[0])[:200],
            )
