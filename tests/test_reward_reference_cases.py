"""Peers' published test cases for the rewards we have counterparts for, transcribed, each naming its source.

Where we differ by design the case says so (a 0/1 scale where a peer uses -1/0, tokens where one counts
characters, "$1,200" accepted as 1200, a prefilled <think> accepted).
"""

from __future__ import annotations

import pytest

from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.builtin import (
    answers,
    formatting,
    gec,
    length_shaping,
    reasoning_steps,
    repetition,
    tags,
)


def call(reward, completions, **columns):
    return reward([[{"role": "user", "content": "q"}]] * len(completions), completions, **columns)


# ---- huggingface/open-r1, tests/test_rewards.py -------------------------------------------------------------

class TestOpenR1:
    def test_accuracy_reward(self):
        # test_accuracy_reward_correct_answer / _wrong_answer / test_multiple_completions
        reward = answers.final_answer_match(mode="math")
        completions = [[{"content": r"\boxed{\frac{63}{400}}"}], [{"content": r"\boxed{\frac{64}{400}}"}]]
        assert call(reward, completions, answer=[r"\frac{63}{400}"] * 2) == [1.0, 0.0]

    def test_format_reward(self):
        # test_format_reward_correct / _incorrect / _specific_multiline: open-r1's current layout, tags on own lines
        reward = tags.think_answer_format(newlines=True)
        good = ["<think>\nSome reasoning\n</think>\n<answer>\nThe answer\n</answer>",
                "<think>\nI will count each distinct object in the image:\n1. Purple scooter\n2. Red bicycle\n"
                "\nThere are 9 distinct objects in total.\n</think>\n<answer>\n9\n</answer>"]
        bad = ["<think>Only thinking</think>", "<answer>Only answer</answer>", "No tags at all",
               "<think>Missing closing</think><answer>Missing closing",
               "<think>Wrong order</answer><answer>Wrong order</think>"]
        assert call(reward, good + bad) == [1.0] * 2 + [0.0] * 5
        # the older open-r1 test accepted tags without newlines: our default (newlines: false) does
        assert call(tags.think_answer_format(), ["<think>Some reasoning</think><answer>The answer</answer>"]) == [1.0]

    def test_reasoning_steps_reward(self):
        reward = reasoning_steps.reasoning_steps()
        cases = [("Step 1: First step\nStep 2: Second step\nStep 3: Third step", 1.0),
                 ("First, we do this.\nSecond, we do that.\nFinally, we conclude.", 1.0),
                 ("Step 1: Only step", 1 / 3), ("First, we do this.\nFinally, we conclude.", 2 / 3),
                 ("Just plain text without any clear steps", 0.0)]
        assert call(reward, [c for c, _ in cases]) == pytest.approx([v for _, v in cases])

    def test_cosine_scaled_reward(self):
        # open-r1 measures characters (content padded with spaces); we measure tokens, so the same lengths are
        # passed as completion_ids (22 for "20": their 22-character content is longer than the padding target).
        # Values to 2 places, as open-r1 asserts.
        reward = length_shaping.cosine_scaled_correctness(max_len=100)
        cases = [(r"\boxed{\frac{63}{400}}", 20, 0.943), (r"\boxed{\frac{63}{400}}", 80, 0.547),
                 (r"\boxed{\frac{64}{400}}", 20, -0.942), (r"\boxed{\frac{64}{400}}", 80, -0.547)]
        scores = call(reward, [c for c, _, _ in cases], answer=[r"\frac{63}{400}"] * 4,
                      completion_ids=[[1] * max(n, len(c)) for c, n, _ in cases])
        assert scores == [pytest.approx(v, abs=0.005) for _, _, v in cases]

    @pytest.mark.parametrize(
        "text, ngram_size, max_penalty, theirs",
        [("this is a test sentence", 2, -1.0, 0.0), ("this this this this this", 2, -1.0, -0.75),
         ("this is a this is a test", 2, -1.0, -1 / 3), ("this is a test", 3, -0.5, 0.0),
         ("test test test test", 3, -0.5, -0.25), ("", 2, -1.0, 0.0), ("this is a this is a test", 3, -2.0, -0.4),
         ("word", 3, -1.0, 0.0), ("two words", 3, -1.0, 0.0), ("three different words", 3, -1.0, 0.0),
         ("word word word word", 3, -1.0, -0.5), ("one two one two", 3, -1.0, 0.0), ("A B C A B", 3, -0.5, 0.0),
         ("A B C A B C", 3, -1.0, -0.25), ("A B C A B C E F G A B C A B C", 3, -1.0, -0.3846),
         ("A B C D E F G H I J K L", 3, -1.0, 0.0)],
    )
    def test_repetition_penalty(self, text, ngram_size, max_penalty, theirs):
        # TestRepetitionPenaltyReward. By design ours is a score, 1 - max_penalty * share, with a positive
        # max_penalty: ours = 1 + theirs when our max_penalty = -theirs'.
        reward = repetition.repetition_penalty(ngram_size=ngram_size, max_penalty=-max_penalty)
        assert call(reward, [text]) == [pytest.approx(1.0 + theirs, abs=1e-4)]

    def test_repetition_penalty_mixed_case(self):
        reward = repetition.repetition_penalty(ngram_size=2)
        assert call(reward, ["This is A Test"]) == call(reward, ["this IS a test"])

    @pytest.mark.parametrize(
        "text, expected",
        [("<think>\nSome reasoning\n</think>\n<answer>\nThe answer\n</answer>", 1.0),
         ("Some reasoning\n</think>\n<answer>\nThe answer\n</answer>", 0.75),
         ("<think>\nSome reasoning\n<answer>\nThe answer\n</answer>", 0.75),
         ("<think>\nSome reasoning\n</think>\nThe answer\n</answer>", 0.75),
         ("<think>\nSome reasoning\n</think>\n<answer>\nThe answer", 0.75),
         ("Some reasoning\nThe answer", 0.0)],
    )
    def test_tag_count(self, text, expected):
        assert call(tags.tag_count(), [text]) == [expected]

    def test_soft_overlong_punishment(self):
        # open-r1 passes strings of 50 / 110 / 90 characters; ours (as TRL) counts tokens
        reward = length_shaping.soft_overlong_punishment(max_completion_len=100, soft_punish_cache=20)
        assert call(reward, ["a"] * 3, completion_ids=[[1] * 50, [1] * 110, [1] * 90]) == [0.0, -1.0, -0.5]


# ---- huggingface/trl, tests/test_rewards.py -----------------------------------------------------------------

class TestTRL:
    def test_think_format_reward(self):
        reward = formatting.think_format()
        valid = ["<think>This is my reasoning.</think>This is my answer.",
                 "<think>\nThis is my reasoning.\n</think>\nThis is my answer.",
                 "<think>\nThis is\nmy reasoning.\n</think>\nThis is my answer.",
                 "<think>\nThis is <some tag> my reasoning.</think>\nThis is my answer.",
                 "<think></think>\nThis is my answer."]
        invalid = ["<think>\nThis is my reasoning.\nThis is my answer.",
                   "<think>This is my reasoning.\nThis is my answer.",
                   "This is my reasoning. This is my answer.", "This is my reasoning.\nThis is my answer.",
                   "This<think>is my reasoning.</think>\nThis is my answer.",
                   "<think>This is<think>my reasoning.</think></think>This is my answer.",
                   "<think>This is</think>\nmy\n<think>reasoning.</think>\nThis is my answer."]
        assert call(reward, valid + invalid) == [1.0] * 5 + [0.0] * 7
        # By design we accept a missing opening <think>: chat templates prefill it (TRL scores these 0.0)
        prefilled = ["This is my reasoning.</think>\nThis is my answer.",
                     "This is my reasoning.</think>This is my answer."]
        assert call(reward, prefilled) == [1.0, 1.0]

    def test_soft_overlong_punishment(self):
        reward = length_shaping.soft_overlong_punishment(max_completion_len=100, soft_punish_cache=20)
        scores = call(reward, ["x"] * 3, completion_ids=[[1] * 50, [1] * 110, [1] * 90])
        assert scores == [0.0, -1.0, pytest.approx(-0.5)]

    def test_accuracy_reward(self):
        reward = answers.final_answer_match(mode="math")
        # test_accuracy_reward_correct_answer, _wrong_answer, _wrong_answer_no_latex
        completions = [r"\boxed{\frac{63}{400}}", r"\boxed{\frac{63}{400}}", r"\boxed{\frac{64}{400}}", r"\boxed{3}"]
        assert call(reward, completions, answer=[r"\frac{63}{400}", "63/400", r"\frac{63}{400}", "6"]) == [
            1.0, 1.0, 0.0, 0.0]

    def test_accuracy_reward_unparsable_gold(self):
        reward = answers.final_answer_match(mode="math")
        completions = ["Answer is forty two.", r"Some other content. \boxed{43}."]
        assert call(reward, completions, answer=["Answer is forty two.", "Answer is forty three."]) == [None, None]

    def test_accuracy_reward_in_worker_thread(self):
        import threading

        reward = answers.final_answer_match(mode="math")
        results = []
        thread = threading.Thread(
            target=lambda: results.extend(call(reward, [r"\boxed{\frac{1}{3}}"], answer=[r"\frac{1}{3}"])))
        thread.start()
        thread.join(120)
        assert results == [1.0]

    def test_reasoning_accuracy_reward(self):
        reward = answers.final_answer_match(mode="math", cot_start="<think>", cot_end="</think>")
        right = [r"<think> Reasoning content </think> \boxed{\frac{63}{400}}",
                 r"Reasoning content </think> \boxed{\frac{63}{400}}"]
        assert call(reward, right, answer=[r"\frac{63}{400}"] * 2) == [1.0, 1.0]
        wrong = [r"<think> Reasoning content </think> \boxed{\frac{64}{400}}"]
        assert call(reward, wrong, answer=[r"\frac{63}{400}"]) == [0.0]
        in_reasoning = [r"<think> My answer is \boxed{42} </think> Some other text.",
                        r"<think> The answer is \boxed{42} </think> Here's a wrong answer: \boxed{43}."]
        assert call(reward, in_reasoning, answer=[r"\boxed{42}"] * 2) == [0.0, 0.0]
        assert call(reward, [r"<think> Reasoning content </think> \boxed{42}"], answer=["forty two"]) == [None]
        # By design a completion without cot_end is read whole (think_format polices the layout): TRL scores
        # "<think> Incomplete reasoning without closing tag" and a bare answer 0.0; the first is 0.0 here too
        assert call(reward, [r"<think> Incomplete reasoning without closing tag"], answer=[r"\frac{63}{400}"]) == [0.0]

    def test_cosine_scaled_reward(self):
        reward = length_shaping.cosine_scaled_correctness(max_len=100)
        third, half = r"\boxed{\frac{1}{3}}", r"\boxed{\frac{1}{2}}"
        answer = [r"\frac{1}{3}"] * 2

        def scores(completions, lengths):
            return call(reward, completions, answer=answer, completion_ids=[[1] * n for n in lengths])

        assert scores([third, third], [25, 75]) == [pytest.approx(0.92678, abs=1e-4), pytest.approx(0.57322, abs=1e-4)]
        assert scores([half, half], [25, 75]) == [pytest.approx(-0.92678, abs=1e-4), pytest.approx(-0.57322, abs=1e-4)]
        assert scores([third, half], [50, 50]) == [pytest.approx(0.75), pytest.approx(-0.75)]
        assert scores([third, third], [0, 100]) == [pytest.approx(1.0), pytest.approx(0.5)]
        assert scores([half, half], [0, 100]) == [pytest.approx(-1.0), pytest.approx(-0.5)]
        assert scores([third, half], [200, 200]) == [pytest.approx(0.5), pytest.approx(-0.5)]
        custom = length_shaping.cosine_scaled_correctness(max_len=100, min_value_correct=0.0, max_value_correct=2.0)
        assert call(custom, [third], answer=answer[:1], completion_ids=[[1] * 50]) == [pytest.approx(1.0)]
        assert call(reward, [r"\boxed{42}"], answer=["forty two"], completion_ids=[[1] * 50]) == [None]


# ---- volcengine/verl, verl/utils/reward_score/gsm8k.py (extract_solution, method "strict") ---------------------
# ---- karpathy/nanochat, tasks/gsm8k.py (extract_answer: GSM_RE = "#### (\-?[0-9\.\,]+)", commas dropped) -------

class TestGsm8kScorers:
    @pytest.mark.parametrize(
        "solution, expected",
        [("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72", "72"), ("#### 1,200", "1,200"),
         ("#### -5", "-5"), ("#### 72 clips", "72"), ("#### 5 + 3 = 8", "5"), ("#### 3.5", "3.5"), ("no marker", None)],
    )
    def test_number_right_after_the_marker(self, solution, expected):
        assert answers.extract_gsm8k(solution) == expected

    def test_reward_matches_their_compute_score(self):
        reward = answers.final_answer_match(answer_style="gsm8k")
        completions = ["... so #### 72", "#### 72.0", "#### 1,200", "The answer is 72", "#### 71"]
        assert call(reward, completions, answer=["#### 72", "#### 72", "#### 1200", "#### 72", "#### 72"]) == [
            1.0, 1.0, 1.0, 0.0, 0.0]
        # verl and nanochat compare strings ("72.0" != "72"); we compare numbers: a design difference

    def test_dollar_sign_accepted_by_design(self):
        # verl's strict regex needs a digit right after "#### " and nanochat's too, so "#### $1,200" is no
        # answer for them; we read it as 1200
        reward = answers.final_answer_match(answer_style="gsm8k")
        assert call(reward, ["#### $1,200"], answer=["#### 1200"]) == [1.0]

    def test_last_marker_counts(self):
        # verl and nanochat take the first "####" match; we take the last, as with \boxed{} (a model that
        # corrects itself is read by its final answer)
        assert answers.extract_gsm8k("#### 1\nno wait\n#### 2") == "2"


# ---- volcengine/verl, verl/utils/reward_score/math_reward.py (formerly math.py): the hendrycks MATH ----------
# normalisation (last_boxed_only_string, remove_boxed, strip_string: _fix_fracs, _fix_sqrt, \dfrac, \left,
# ^\circ, \%, "x =", ".5") says these pairs are equal; both our numeric and math modes agree.

class TestVerlMathNormalisation:
    @pytest.mark.parametrize(
        "given, reference",
        [(r"\boxed{\frac12}", r"\frac{1}{2}"), (r"\boxed{\dfrac{1}{2}}", r"\frac{1}{2}"),
         (r"\boxed{\tfrac{3}{4}}", "3/4"),
         (r"\boxed 5", "5"), (r"\boxed{90^\circ}", "90"), (r"\boxed{90^{\circ}}", "90"), (r"\boxed{50\%}", "50"),
         (r"\boxed{x = 5}", "5"), (r"\boxed{.5}", "0.5"), (r"\boxed{\$10}", "10"), (r"\boxed{10.}", "10")],
    )
    @pytest.mark.parametrize("mode", ["numeric", "math"])
    def test_equal(self, given, reference, mode):
        assert call(answers.final_answer_match(mode=mode), [given], answer=[reference]) == [1.0]

    @pytest.mark.parametrize(
        "given, reference",
        [(r"\boxed{\sqrt2}", r"\sqrt{2}"), (r"\boxed{\left( 1, 2 \right)}", "(1,2)"),
         (r"\boxed{\frac{\sqrt{3}}{2}}", r"\frac{\sqrt3}{2}")],
    )
    def test_equal_in_math_mode(self, given, reference):
        assert call(answers.final_answer_match(mode="math"), [given], answer=[reference]) == [1.0]


# ---- nusnlp/m2scorer, README.md (the worked example; gold in example/source_gold) ----------------------------

class TestM2ScorerReadme:
    SOURCES = ["The cat sat at mat .", "The dog .", "Giant otters is an apex predator ."]
    SYSTEM = ["A cat sat on the mat .", "The dog .", "Giant otters are apex predator ."]
    # each annotator's edits applied to the source
    GOLD = [["The cat sat on the mat ."],
            ["The dogs .", "The dog ."],
            ["Giant otters are apex predators .", "Giant otter is an apex predator ."]]

    def best_counts(self, source, hypothesis, references):
        """The annotator that maximises F0.5 for this sentence, as m2scorer picks it."""
        counts = [gec.edit_counts(source, hypothesis, r) for r in references]
        return max(counts, key=lambda c: (gec.fscore(*c, beta=0.5), -c[1] - c[2]))

    def test_corpus_precision_recall_f05_are_08(self):
        totals = [sum(c) for c in zip(*(self.best_counts(*row) for row in zip(self.SOURCES, self.SYSTEM, self.GOLD)))]
        true_positives, false_positives, false_negatives = totals
        assert (true_positives, false_positives, false_negatives) == (4, 1, 1)  # "four valid edits, one unnecessary
        assert gec.fscore(*totals, beta=0.5) == pytest.approx(0.8)  # edit, and one missing edit": P = R = F0.5 = 0.8

    def test_per_sentence_rewards(self):
        reward = gec.gec_edit_f1()
        prompts = [[{"role": "user", "content": s}] for s in self.SOURCES]
        scores = reward(prompts, self.SYSTEM, answer=self.GOLD)
        # sentence 1: 2 of 3 edits right, none missed; 2: annotator 1 wants no edit; 3: 2 right, 1 missed
        assert scores == [pytest.approx(1.25 * (2 / 3) / (0.25 * (2 / 3) + 1)), 1.0,
                          pytest.approx(1.25 * (2 / 3) / (0.25 + 2 / 3))]
