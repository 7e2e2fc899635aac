"""Step-by-step reasoning (open-r1's reasoning_steps_reward): credit for visible steps, full at min_steps."""

from __future__ import annotations

import re

from ..columns import reads_columns
from ..registry import register_reward_function
from .common import as_text

# "Step 1:", a numbered line "2.", a "-" or "*" bullet line, or a transition word, as open-r1 counts them.
STEP_RE = re.compile(r"Step \d+:|^\d+\.|\n-|\n\*|First,|Second,|Next,|Finally,", flags=re.MULTILINE)


def count_steps(text: str) -> int:
    """How many step markers `text` has.

    >>> count_steps("First, add.\\n1. carry\\n2. sum\\nFinally, done.")
    4
    """
    return len(STEP_RE.findall(text))


@register_reward_function("reasoning_steps")
def reasoning_steps(min_steps: int = 3):
    """Rewards visible step-by-step reasoning: min(1, steps / min_steps), steps counted by open-r1's markers
    ("Step 1:", numbered lines, "-" / "*" bullets, "First,", "Second,", "Next,", "Finally,").

    The whole completion is read, reasoning included. Range [0, 1]; never None; does not read `answer`.
    Numbered lines count on every line (open-r1's pattern, lacking re.MULTILINE, only counts one at the
    very start). Rewards the look of steps, not their quality: pair it with a correctness reward.

    Config:
        reward_funcs:
          - name: reasoning_steps
            min_steps: 3
            weight: 0.2

    >>> reasoning_steps()([[]] * 3, ["Step 1: a\\nStep 2: b\\nStep 3: c", "Step 1: only", "plain"])
    [1.0, 0.3333333333333333, 0.0]
    """
    if min_steps < 1:
        raise ValueError(f"reasoning_steps: min_steps must be at least 1, not {min_steps}")

    def reward(prompts, completions, **columns) -> list[float]:
        return [min(1.0, count_steps(as_text(c)) / min_steps) for c in completions]

    return reads_columns(reward)
