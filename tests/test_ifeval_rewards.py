"""ifeval_instructions: Google's IFEval checkers (via if-verifiable), strict / loose, share / all, offline."""

from __future__ import annotations

import pytest

from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.builtin import ifeval

# ids and kwargs laid out as google/IFEval rows are (unused keys None after Arrow unifies the dicts)
NO_COMMA = "punctuation:no_comma"
WORDS = "length_constraints:number_words"
SENTENCES = "length_constraints:number_sentences"
CAPITALS = "change_case:capital_word_frequency"


def score(completions, ids, kwargs, prompt="Write something.", **options):
    reward = ifeval.ifeval_instructions(**options)
    prompts = [[{"role": "user", "content": prompt}]] * len(completions)
    count = len(completions)
    return reward(prompts, completions, instruction_id_list=[ids] * count, kwargs=[kwargs] * count)


class TestScoring:
    IDS = [NO_COMMA, WORDS]
    KWARGS = [{"num_words": None, "relation": None}, {"num_words": 3, "relation": "at least"}]

    def test_share_and_all(self):
        completions = ["Yes it is so", "Yes, it is so", "Yes, no"]
        assert score(completions, self.IDS, self.KWARGS) == [1.0, 0.5, 0.0]
        assert score(completions, self.IDS, self.KWARGS, aggregate="all") == [1.0, 0.0, 0.0]

    def test_loose_accepts_markdown_and_a_first_line(self):
        ids, kwargs = ["startend:quotation"], [{}]
        completion = 'Sure, here it is:\n"All of it quoted."'
        assert score([completion], ids, kwargs) == [0.0]
        assert score([completion], ids, kwargs, mode="loose") == [1.0]

    def test_reasoning_is_not_the_response(self):
        completion = "<think>I may use commas, yes, here.</think>No commas here"
        assert score([completion], [NO_COMMA], [{}], cot_end="</think>") == [1.0]
        assert score([completion], [NO_COMMA], [{}]) == [1.0]  # if-verifiable itself drops up to </think>
        completion = "Thinking, with commas. Answer: no commas"
        assert score([completion], [NO_COMMA], [{}], cot_end="Answer:") == [1.0]
        assert score([completion], [NO_COMMA], [{}]) == [0.0]

    def test_prompt_is_passed_to_checkers_that_need_it(self):
        ids, kwargs = ["combination:repeat_prompt"], [{"prompt_to_repeat": "Write a CL description."}]
        good = "Write a CL description. Hi, Le and TJ, please check this out."
        assert score([good, "Hi. Write a CL description."], ids, kwargs) == [1.0, 0.0]

    def test_language_detection_is_deterministic(self):
        # google-research instruction_following_eval/instructions_test.py: test_language_detection_seed_is_fixed,
        # test_response_multilanguage
        ids, kwargs = ["language:response_language"], [{"language": "es"}]
        results = {tuple(score(["Desayunamos en McDonald's hoy"], ids, kwargs)) for _ in range(5)}
        assert results == {(1.0,)}
        assert score(["Today we visit the Louvre"], ids, [{"language": "en"}]) == [1.0]

    def test_empty_response_scores_zero(self):
        assert score(["", "   "], [NO_COMMA], [{}]) == [0.0, 0.0]


class TestRowsThatCannotBeScored:
    def test_no_instructions_is_none(self):
        reward = ifeval.ifeval_instructions()
        assert reward([[]] * 3, ["a", "b", "c"], instruction_id_list=[[], None, ""], kwargs=[[], None, ""]) == [
            None, None, None]
        assert reward([[]], ["a"]) == [None]  # no columns at all

    def test_unknown_id_is_none_counted_and_warned_once(self, caplog):
        reward = ifeval.ifeval_instructions()
        logged = []
        columns = {"instruction_id_list": [["punctuation:no_coma"], [NO_COMMA]], "kwargs": [[{}], [{}]],
                   "log_metric": lambda name, value: logged.append((name, value))}
        with caplog.at_level("WARNING"):
            assert reward([[]] * 2, ["a", "b"], **columns) == [None, 1.0]
            assert reward([[]] * 2, ["a", "b"], **columns) == [None, 1.0]
        assert logged == [("rewards/ifeval_instructions/unparsed_reference", 1.0)] * 2
        assert sum("no_coma" in r.getMessage() for r in caplog.records) == 1

    def test_missing_kwargs_entries_default_to_empty(self):
        assert score(["no commas"], [NO_COMMA, "startend:quotation"], []) == [0.5]


class TestOfflineCheckers:
    """The two punkt-based checkers, on Google's own cases (google-research/google-research,
    instruction_following_eval/instructions_test.py: test_number_sentences, test_capital_word_frequency)."""

    @pytest.mark.parametrize(
        "response, relation, num_sentences, expected",
        [("xx,x. xx,x! xx/x. x{x}x?", "less than", 4, False),
         ("xxxx. xx,x! xxxx. x(x)x?", "less than", 5, True),
         ("xxxx. xx,x! xx|x. x&x x?", "at least", 4, True),
         ("xx-x. xx,x! xx}x. x,xx?", "at least", 5, False)],
    )
    def test_number_sentences(self, response, relation, num_sentences, expected):
        kwargs = [{"num_sentences": num_sentences, "relation": relation}]
        assert score([response], [SENTENCES], kwargs) == [1.0 if expected else 0.0]

    @pytest.mark.parametrize(
        "response, relation, frequency, expected",
        [("\n  HERE there are THREE FUlly CAPITAL words.\n  ", "at least", 3, True),
         ("\n  THERE are Four FULLY CAPITAL WORDS. Many Others Are Only Partially So.\n  ", "less than", 5, True),
         ("\n  THERE are Four FULLY CAPITAL WORDS. Many Others Are Only Partially So.\n  ", "less than", 4, False)],
    )
    def test_capital_word_frequency(self, response, relation, frequency, expected):
        kwargs = [{"capital_frequency": frequency, "capital_relation": relation}]
        assert score([response], [CAPITALS], kwargs) == [1.0 if expected else 0.0]

    def test_sentence_counting_keeps_abbreviations_and_decimals(self):
        kwargs = [{"num_sentences": 3, "relation": "less than"}]
        assert score(["Mr. Smith paid 3.5 dollars. He left."], [SENTENCES], kwargs) == [1.0]


class TestSettings:
    def test_punkt_without_its_data_is_refused_clearly(self):
        import nltk

        try:
            nltk.data.find("tokenizers/punkt_tab/english/")
            pytest.skip("punkt_tab is installed here")
        except LookupError:
            pass
        with pytest.raises(ValueError, match="punkt_tab.*sentence_splitter: regex"):
            ifeval.ifeval_instructions(sentence_splitter="punkt")

    @pytest.mark.parametrize("kwargs", [{"mode": "lenient"}, {"aggregate": "mean"}, {"sentence_splitter": "spacy"}])
    def test_bad_settings(self, kwargs):
        with pytest.raises(ValueError, match="ifeval_instructions"):
            ifeval.ifeval_instructions(**kwargs)

    def test_custom_columns(self):
        reward = ifeval.ifeval_instructions(ids_column="checks", kwargs_column="check_args")
        assert reward([[]], ["a, b"], checks=[[NO_COMMA]], check_args=[[{}]]) == [0.0]
