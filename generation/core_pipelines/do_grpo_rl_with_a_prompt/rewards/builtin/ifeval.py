"""IFEval verifiable instructions (seed 003): the share of a row's instructions that the completion follows.

Rows carry their instructions as columns, as google/IFEval writes them: `instruction_id_list` (e.g.
["punctuation:no_comma", "length_constraints:number_words"]) and `kwargs` (one dict of arguments per
instruction, e.g. {"num_words": 100, "relation": "at least"}; None values are ignored). The checkers are
Google's own, as packaged by `if-verifiable` (Apache-2.0), with its strict and loose evaluation (loose
also accepts the response without its first / last line or without markdown asterisks).

Two of Google's checkers need nltk's punkt data, which a pip install does not bring:
length_constraints:number_sentences and change_case:capital_word_frequency. With sentence_splitter
"regex" (the default) they count sentences with Google's own regex splitter (instructions_util.
split_into_sentences) and words with nltk's data-free Treebank tokenizer, so they work offline;
"punkt" uses nltk's punkt as Google does and is refused at config time when its data is missing.
"""

from __future__ import annotations

from typing import Any

from ..columns import reads_columns
from ..registry import register_reward_function
from .common import UnparsedReferenceCounter, answer_text, column, last_user_message

MODES = ("strict", "loose")
AGGREGATES = ("share", "all")
SPLITTERS = ("regex", "punkt")
NEEDS_PUNKT = ("length_constraints:number_sentences", "change_case:capital_word_frequency")


def _offline_checkers() -> dict[str, type]:
    """The two punkt-based checkers, counting with Google's regex sentence splitter instead."""
    from if_verifiable.ifeval import instructions, instructions_util
    from nltk.tokenize import NLTKWordTokenizer

    words = NLTKWordTokenizer()

    class NumberOfSentences(instructions.NumberOfSentences):
        def check_following(self, value):
            count = len(instructions_util.split_into_sentences(value))
            if self._comparison_relation == instructions._COMPARISON_RELATION[0]:
                return count < self._num_sentences_threshold
            return count >= self._num_sentences_threshold

    class CapitalWordFrequencyChecker(instructions.CapitalWordFrequencyChecker):
        def check_following(self, value):
            tokens = [t for s in instructions_util.split_into_sentences(value) for t in words.tokenize(s)]
            capitals = sum(token.isupper() for token in tokens)
            if self._comparison_relation == instructions._COMPARISON_RELATION[0]:
                return capitals < self._frequency
            return capitals >= self._frequency

    return dict(zip(NEEDS_PUNKT, (NumberOfSentences, CapitalWordFrequencyChecker)))


def checker_registry(sentence_splitter: str = "regex") -> dict[str, type]:
    """IFEval's instruction id -> checker class, with the offline checkers unless sentence_splitter is punkt.

    Raises ValueError when if-verifiable is not installed, or punkt is asked for and its data is missing.
    """
    try:
        import langdetect
        from if_verifiable.ifeval.instructions_registry import INSTRUCTION_DICT
    except ImportError as error:
        raise ValueError(f"ifeval_instructions needs the if-verifiable package (pip install if-verifiable): {error}")
    # language checks are random without a seed; Google's current instructions.py fixes it at 0 too
    langdetect.DetectorFactory.seed = 0
    if sentence_splitter == "punkt":
        import nltk

        try:
            nltk.data.find("tokenizers/punkt_tab/english/")
        except LookupError:
            raise ValueError(
                "ifeval_instructions: sentence_splitter 'punkt' needs nltk's punkt_tab data, which is not installed "
                "(python -m nltk.downloader punkt_tab); or use sentence_splitter: regex, which works offline"
            ) from None
        return dict(INSTRUCTION_DICT)
    return {**INSTRUCTION_DICT, **_offline_checkers()}


def _as_list(value: Any) -> list:
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


@register_reward_function("ifeval_instructions")
def ifeval_instructions(
    mode: str = "strict",
    aggregate: str = "share",
    ids_column: str = "instruction_id_list",
    kwargs_column: str = "kwargs",
    sentence_splitter: str = "regex",
    cot_start: str | None = None,
    cot_end: str | None = None,
):
    """Rewards following the row's verifiable instructions (IFEval): the share of them followed, in [0, 1].

    mode "strict" checks the response as written, "loose" also the variants IFEval's loose score tries.
    aggregate "share" gives the instruction-level score (followed / given), "all" the prompt-level one
    (1.0 only when every instruction is followed). The response is the completion after cot_end when set
    (if-verifiable also drops everything up to a `</think>` itself).
    Some checkers (combination:repeat_prompt) compare with the prompt's last user message. Does not read
    `answer`. Give every argument a checker takes: Google's checkers draw missing ones at random.
    A row without instructions: None. A row naming an id IFEval does not know: None, counted as
    rewards/ifeval_instructions/unparsed_reference and warned about once. An empty response scores 0.0.

    Config:
        reward_funcs:
          - name: ifeval_instructions
            mode: strict            # or loose
            aggregate: share        # or all (prompt-level)
            cot_end: "</think>"

    >>> reward = ifeval_instructions()
    >>> reward([[{"role": "user", "content": "Answer without commas, in 3+ words."}]] * 2,
    ...        ["Yes it is", "Yes, it is"],
    ...        instruction_id_list=[["punctuation:no_comma", "length_constraints:number_words"]] * 2,
    ...        kwargs=[[{}, {"num_words": 3, "relation": "at least"}]] * 2)
    [1.0, 0.5]
    """
    for key, value, allowed in (("mode", mode, MODES), ("aggregate", aggregate, AGGREGATES),
                                ("sentence_splitter", sentence_splitter, SPLITTERS)):
        if value not in allowed:
            raise ValueError(f"ifeval_instructions: {key} must be one of {', '.join(allowed)}, not {value!r}")
    registry = checker_registry(sentence_splitter)
    from if_verifiable.common import evaluate_instructions

    counter = UnparsedReferenceCounter("ifeval_instructions", "name instructions IFEval does not know")

    def score(prompt, completion, ids: list, arguments: list) -> tuple[float | None, Any]:
        if not ids:
            return None, None
        unknown = [i for i in ids if i not in registry]
        if unknown:
            return None, unknown
        arguments = [dict(a or {}) for a in arguments] + [{}] * (len(ids) - len(arguments))
        response = answer_text(completion, cot_start, cot_end)
        _, scores = evaluate_instructions(response, list(ids), arguments, last_user_message(prompt), registry)
        name = ("partial_" if aggregate == "share" else "binary_") + mode
        return float(getattr(scores, name)), None

    def reward(prompts, completions, **columns) -> list[float | None]:
        ids = column(columns, ids_column, len(completions))
        arguments = column(columns, kwargs_column, len(completions))
        results = [score(p, c, _as_list(i), _as_list(a)) for p, c, i, a in zip(prompts, completions, ids, arguments)]
        counter.report([unknown for _, unknown in results], columns)
        return [value for value, _ in results]

    return reads_columns(reward, ids_column, kwargs_column)
