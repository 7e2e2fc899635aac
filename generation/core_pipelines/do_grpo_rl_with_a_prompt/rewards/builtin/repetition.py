"""Repetition guard: penalize completions that loop over the same phrases."""

from __future__ import annotations

import re

from ..columns import reads_columns
from ..registry import register_reward_function
from .common import as_text

# Scripts written without spaces between words: each character counts as a word (Han, kana, Thai, Lao, ...).
_UNSPACED = "\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f"
_WORD_RE = re.compile(rf"[{_UNSPACED}]|[^\s{_UNSPACED}]+")


def words(text: str) -> list[str]:
    """Lower-cased words: whitespace-separated, except that each character of an unspaced script is one.

    >>> words("Hello 世界!"), words("猫が猫")
    (['hello', '世', '界', '!'], ['猫', 'が', '猫'])
    """
    return _WORD_RE.findall(text.lower())


def repeated_fraction(text: str, ngram_size: int = 3) -> float:
    """Share of the text's word n-grams that repeat an earlier one, in [0, 1) (0.0 with fewer than n words).

    Words as `words` splits them. 'a b a b a' has 4 bigrams, 2 distinct: 0.5; so has '啊哦啊哦啊'.

    >>> repeated_fraction("a b a b a", ngram_size=2), repeated_fraction("啊哦啊哦啊", ngram_size=2)
    (0.5, 0.5)
    """
    tokens = words(text)
    ngrams = [tuple(tokens[i : i + ngram_size]) for i in range(len(tokens) - ngram_size + 1)]
    if not ngrams:
        return 0.0
    return 1.0 - len(set(ngrams)) / len(ngrams)


@register_reward_function("repetition_penalty")
def repetition_penalty(ngram_size: int = 3, max_penalty: float = 1.0):
    """Rewards text without repeated n-grams: 1 - max_penalty * (share of repeated word n-grams).

    Words are whitespace-separated, and each character of a script written without spaces (Chinese,
    Japanese, Thai) is one word, so the penalty also fires on such text.
    Range [1 - max_penalty, 1]: 1.0 for no repetition (and for texts shorter than ngram_size words, the
    empty one included), falling towards 1 - max_penalty for a text that loops on one phrase. The whole
    completion is checked, reasoning included (reasoning loops are the usual failure). Never None.
    It is written as a score rather than a negative penalty; the two differ by a constant, which GRPO's
    group-relative advantages ignore (with the "sum" combination).

    Config:
        reward_funcs:
          - name: repetition_penalty
            ngram_size: 3
            max_penalty: 1.0

    >>> repetition_penalty(ngram_size=2)([[]] * 2, ["the cat sat on the mat", "go go go go go"])
    [1.0, 0.25]
    """
    if ngram_size < 1:
        raise ValueError(f"repetition_penalty: ngram_size must be at least 1, not {ngram_size}")
    if max_penalty < 0:
        raise ValueError(f"repetition_penalty: max_penalty must not be negative, not {max_penalty}")

    def reward(prompts, completions, **columns) -> list[float]:
        return [1.0 - max_penalty * repeated_fraction(as_text(c), ngram_size) for c in completions]

    return reads_columns(reward)
