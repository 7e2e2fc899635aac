"""Tag layout rewards (open-r1): a strict <think>...</think><answer>...</answer> format, and partial credit per tag."""

from __future__ import annotations

import re

from ..columns import reads_columns
from ..registry import register_reward_function
from .common import as_text


def _tag_name(value: str, key: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][\w-]*", value or ""):
        raise ValueError(f"{key} must be a tag name such as 'think' (letters, digits, _ or -), not {value!r}")
    return value


def follows_think_answer(text: str, think_tag: str = "think", answer_tag: str = "answer", newlines: bool = False,
                         think_prefilled: bool = False) -> bool:
    """True when `text` is exactly `<think>reasoning</think> <answer>answer</answer>`, each tag once.

    newlines: the open-r1 layout, each tag on its own line (`<think>\\n...\\n</think>\\n<answer>\\n...\\n</answer>`).
    think_prefilled: the chat template already wrote `<think>`, so the text may start with the reasoning.

    >>> follows_think_answer("<think>6*7</think> <answer>42</answer>"), follows_think_answer("<answer>42</answer>")
    (True, False)
    """
    think_open, think_close = f"<{think_tag}>", f"</{think_tag}>"
    answer_open, answer_close = f"<{answer_tag}>", f"</{answer_tag}>"
    body = text.strip() if not newlines else text
    if think_prefilled and not body.startswith(think_open):
        body = think_open + ("\n" if newlines else "") + body
    if any(body.count(tag) != 1 for tag in (think_open, think_close, answer_open, answer_close)):
        return False
    t_open, t_close, a_open, a_close = map(re.escape, (think_open, think_close, answer_open, answer_close))
    if newlines:
        pattern = rf"{t_open}\n.*?\n{t_close}\n{a_open}\n.*?\n{a_close}"
    else:
        pattern = rf"{t_open}.*?{t_close}\s*{a_open}.*?{a_close}"
    return re.fullmatch(pattern, body, flags=re.DOTALL) is not None


@register_reward_function("think_answer_format")
def think_answer_format(
    think_tag: str = "think",
    answer_tag: str = "answer",
    newlines: bool = False,
    think_prefilled: bool = False,
    pass_score: float = 1.0,
    fail_score: float = 0.0,
):
    """Rewards the strict layout `<think>reasoning</think><answer>answer</answer>` (open-r1's format_reward):
    each of the four tags exactly once, in that order, nothing but whitespace around them.

    newlines: true requires open-r1's current layout, every tag on its own line. think_prefilled: true
    when the chat template already opened `<think>` (the completion then starts with the reasoning).
    Scores pass_score or fail_score (1.0 / 0.0); never None. Does not read `answer`. think_format is the
    looser check (one cot_end, any answer text after it).

    Config:
        reward_funcs:
          - name: think_answer_format
            newlines: false
            think_prefilled: false
            weight: 0.5

    >>> think_answer_format()([[]] * 3, ["<think>a</think><answer>b</answer>", "<think>a</think>b", "x"])
    [1.0, 0.0, 0.0]
    """
    think_tag, answer_tag = _tag_name(think_tag, "think_tag"), _tag_name(answer_tag, "answer_tag")

    def passes(completion) -> bool:
        return follows_think_answer(as_text(completion), think_tag, answer_tag, newlines, think_prefilled)

    def reward(prompts, completions, **columns) -> list[float]:
        return [pass_score if passes(c) else fail_score for c in completions]

    return reads_columns(reward)


def tag_credit(text: str, think_tag: str = "think", answer_tag: str = "answer") -> float:
    """0.25 for each of open-r1's four tag lines present exactly once: '<think>\\n', '\\n</think>\\n',
    '\\n<answer>\\n', '\\n</answer>'.

    >>> tag_credit("<think>\\nhm\\n</think>\\n<answer>\\n4\\n</answer>"), tag_credit("hm\\n</think>\\n4")
    (1.0, 0.25)
    """
    pieces = (f"<{think_tag}>\n", f"\n</{think_tag}>\n", f"\n<{answer_tag}>\n", f"\n</{answer_tag}>")
    return 0.25 * sum(text.count(piece) == 1 for piece in pieces)


@register_reward_function("tag_count")
def tag_count(think_tag: str = "think", answer_tag: str = "answer"):
    """Partial credit on the way to think_answer_format (open-r1's tag_count_reward): 0.25 for each of
    '<think>\\n', '\\n</think>\\n', '\\n<answer>\\n' and '\\n</answer>' appearing exactly once. Range [0, 1];
    never None. Does not read `answer`.

    Config:
        reward_funcs:
          - name: tag_count
            weight: 0.25

    >>> tag_count()([[]] * 2, ["<think>\\nhm\\n</think>\\n<answer>\\n4\\n</answer>", "4"])
    [1.0, 0.0]
    """
    think_tag, answer_tag = _tag_name(think_tag, "think_tag"), _tag_name(answer_tag, "answer_tag")

    def reward(prompts, completions, **columns) -> list[float]:
        return [tag_credit(as_text(c), think_tag, answer_tag) for c in completions]

    return reads_columns(reward)
