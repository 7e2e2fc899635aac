"""Make every prompt fit training_parameters.max_prompt_length tokens (dataset_settings.truncation).

Modes, for a prompt over the limit (counted after the chat template, generation prompt included):
- turns (default): drop the fewest whole early turns that make it fit, keeping the leading system
  message(s) and starting at a user turn; when even system + the final user turn is too long, drop the row.
- left / right / middle: like turns, then cut inside that one remaining user turn: left keeps its end,
  right its beginning, middle both ends (the tokens in between go). A row is dropped only when not even
  one token of the turn fits beside the system message.
- drop: drop every overlong row (verl's filter_overlong_prompts).
- error: the first overlong prompt stops the run, naming its file:line.

Dropped and truncated rows are counted per dataset in the report.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

from .formats import DataError
from .sampling import DataReport, SampledData

MODES = ("error", "left", "right", "middle", "turns", "drop")
Messages = list[dict]


@dataclass(frozen=True)
class PromptTokens:
    """How prompts are measured and cut: count(messages) after the chat template; encode/decode of text."""

    count: Callable[[Messages], int]
    encode: Optional[Callable[[str], list]] = None
    decode: Optional[Callable[[list], str]] = None

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> "PromptTokens":
        """Counting with the tokenizer's chat template, cutting with its encode/decode (no special tokens)."""

        def count(messages: Messages) -> int:
            ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
            return len(ids)

        return cls(
            count=count,
            encode=lambda text: tokenizer.encode(text, add_special_tokens=False),
            decode=lambda ids: tokenizer.decode(ids, skip_special_tokens=False),
        )


def fit_prompts_to_length(
    data: SampledData,
    tokens: Union[PromptTokens, Callable[[Messages], int]],
    max_prompt_length: Optional[int],
    mode: str,
) -> SampledData:
    """Make every prompt (train and eval) fit max_prompt_length tokens per `mode` (see the module doc).

    `tokens` is a PromptTokens, or just the count function for the modes that never cut text (turns,
    drop, error). Returns new lists and a new report, leaving `data` unchanged (with max_prompt_length
    None: `data` itself). Raises DataError in mode "error".
    """
    mode = {"truncate": "turns"}.get(mode, mode)  # the name before truncation modes existed
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if not isinstance(tokens, PromptTokens):
        tokens = PromptTokens(count=tokens)
    if mode in ("left", "right", "middle") and (tokens.encode is None or tokens.decode is None):
        raise ValueError(f"mode {mode!r} cuts text: give PromptTokens with encode and decode")
    if max_prompt_length is None:
        return data
    report = copy.deepcopy(data.report)
    fitter = _Fitter(tokens, max_prompt_length, mode, report)
    return SampledData(fitter.rows(data.train_rows, False), fitter.rows(data.eval_rows, True), report)


@dataclass
class _Fitter:
    tokens: PromptTokens
    limit: int
    mode: str
    report: DataReport

    def rows(self, rows: list[dict], is_eval: bool) -> list[dict]:
        kept = []
        for row in rows:
            size = self.tokens.count(row["prompt"])
            if size <= self.limit:
                kept.append(row)
                continue
            if self.mode == "error":
                raise DataError(f"{row['source']}: the prompt has {size} tokens, over training_parameters."
                                f"max_prompt_length {self.limit} (dataset_settings.truncation is 'error')")
            entry = self.report.per_dataset.setdefault(self._entry_key(row, is_eval), {})
            prompt = None if self.mode == "drop" else self.fit(row["prompt"])
            if prompt is None:
                entry["dropped_overlong"] = entry.get("dropped_overlong", 0) + 1
                continue
            entry["truncated"] = entry.get("truncated", 0) + 1
            kept.append({**row, "prompt": prompt})
        return kept

    def fit(self, prompt: Messages) -> Optional[Messages]:
        """The prompt cut per the mode, or None when it cannot be made to fit."""
        head = 0
        while head < len(prompt) and prompt[head]["role"] == "system":
            head += 1
        system, body = prompt[:head], prompt[head:]
        starts = [i for i, message in enumerate(body) if message["role"] == "user" and i > 0]
        fits = lambda messages: self.tokens.count(messages) <= self.limit  # noqa: E731
        shortest = system + (body[starts[-1]:] if starts else body)
        if fits(shortest):
            # fewer messages never cost more tokens: binary search for the longest tail that fits
            low, high = 0, len(starts) - 1
            while low < high:
                middle = (low + high) // 2
                low, high = (low, middle) if fits(system + body[starts[middle]:]) else (middle + 1, high)
            return system + body[starts[low]:]
        if self.mode == "turns":
            return None
        return self._cut_inside(shortest, fits)

    def _cut_inside(self, messages: Messages, fits: Callable[[Messages], bool]) -> Optional[Messages]:
        """Cut the last user message's text to the most tokens that fit (left/right/middle)."""
        last = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=None)
        if last is None:
            return None
        ids = list(self.tokens.encode(messages[last]["content"]))

        def with_tokens(k: int) -> Messages:
            if self.mode == "left":
                kept = ids[len(ids) - k:]
            elif self.mode == "right":
                kept = ids[:k]
            else:
                kept = ids[: (k + 1) // 2] + ids[len(ids) - k // 2:]
            return messages[:last] + [{"role": "user", "content": self.tokens.decode(kept)}] + messages[last + 1:]

        low, high = 1, len(ids) - 1
        if high < low or not fits(with_tokens(low)):
            return None
        while low < high:
            middle = (low + high + 1) // 2
            low, high = (middle, high) if fits(with_tokens(middle)) else (low, middle - 1)
        return with_tokens(low)

    def _entry_key(self, row: dict, is_eval: bool) -> str:
        """The report entry a row counts under (eval_path rows have their own)."""
        if is_eval and self.report.from_eval_path(row):
            return self.report.eval_path_entry[1]
        return row["dataset_name"]
