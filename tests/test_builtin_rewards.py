"""Built-in rewards: one class per reward, exact values on edge cases; plus contract checks for all of them."""

from __future__ import annotations

import doctest
import inspect
import math
import subprocess
import sys
from pathlib import Path

import pytest

from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards import builtin as builtin_rewards
from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.builtin import (
    answers,
    common,
    formatting,
    gec,
    ifeval,
    length,
    length_shaping,
    math_equivalence,
    math_worker,
    reasoning_steps,
    repetition,
    tags,
)
from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.registry import REWARD_FUNCTIONS

BUILTIN_NAMES = [
    "cosine_scaled_correctness",
    "final_answer_match",
    "gec_edit_f1",
    "gsm8k_correctness",
    "gsm8k_integerresponse",
    "gsm8k_reward",
    "ifeval_instructions",
    "length_reward",
    "max_length",
    "reasoning_steps",
    "repetition_penalty",
    "similarity_gate",
    "soft_overlong_punishment",
    "tag_count",
    "think_answer_format",
    "think_format",
]
# rewards that read the `answer` column: each says in its docstring what an empty one gives
READS_ANSWER = ["cosine_scaled_correctness", "final_answer_match", "gec_edit_f1", "gsm8k_correctness", "gsm8k_reward"]
REQUIRED_KWARGS = {"max_length": {"max_words": 10}}
ROOT = Path(__file__).resolve().parents[1]


def user(text: str) -> list[dict]:
    return [{"role": "system", "content": "Be helpful."}, {"role": "user", "content": text}]


def call(reward, completions, prompts=None, **columns):
    prompts = prompts if prompts is not None else [user("question")] * len(completions)
    return reward(prompts, completions, **columns)


class TestContract:
    def test_all_registered(self):
        for name in BUILTIN_NAMES:
            assert name in REWARD_FUNCTIONS

    @pytest.mark.parametrize("name", BUILTIN_NAMES)
    def test_documented_and_typed(self, name):
        initializer = REWARD_FUNCTIONS.get(name)
        assert "reward_funcs:" in (initializer.__doc__ or ""), "docstring needs an example config"
        for parameter in inspect.signature(initializer).parameters.values():
            assert parameter.kind is parameter.POSITIONAL_OR_KEYWORD
            assert parameter.annotation is not inspect.Parameter.empty

    @pytest.mark.parametrize("name", BUILTIN_NAMES)
    def test_weird_text_never_raises(self, name):
        reward = REWARD_FUNCTIONS.get(name)(**REQUIRED_KWARGS.get(name, {}))
        completions = [
            "", "   ", None, "ünïcödé 😀 </think> ＃＃＃＃ ４２", "<think>", "</think>", "\\boxed{", "x" * 20000,
            "#### ", "<answer></answer>", [{"role": "assistant", "content": "42"}],
        ]
        n = len(completions)
        prompts = [user(""), "plain string prompt", [], None] + [user("Correct this: Hi")] * (n - 4)
        scores = reward(prompts, completions, answer=["42", "", None, "😀"] + ["#### 42"] * (n - 4),
                        dataset_name=["d"] * n, trainer_state=object(), unknown_column=[1] * n)
        assert len(scores) == n
        assert all(s is None or (isinstance(s, float) and math.isfinite(s)) for s in scores)

    @pytest.mark.parametrize("name", BUILTIN_NAMES)
    def test_empty_batch(self, name):
        reward = REWARD_FUNCTIONS.get(name)(**REQUIRED_KWARGS.get(name, {}))
        assert reward([], [], answer=[]) == []

    @pytest.mark.parametrize("name", READS_ANSWER)
    def test_says_what_an_empty_answer_gives(self, name):
        doc = " ".join((REWARD_FUNCTIONS.get(name).__doc__ or "").split())
        assert "Empty `answer`" in doc

    def test_registry_table_lists_every_builtin(self):
        for name in BUILTIN_NAMES:
            assert f"| {name}" in builtin_rewards.__doc__ or f", {name}" in builtin_rewards.__doc__, name

    @pytest.mark.parametrize(
        "module",
        [answers, common, formatting, gec, ifeval, length, length_shaping, math_equivalence, math_worker,
         reasoning_steps, repetition, tags],
    )
    def test_doctests(self, module):
        result = doctest.testmod(module)
        assert result.failed == 0

    def test_no_heavy_imports(self):
        code = f"import sys; import {builtin_rewards.__name__}; print('torch' in sys.modules)"
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
        assert result.stdout.strip() == "False"


class TestCommon:
    def test_last_user_message(self):
        assert common.last_user_message(user("hi")) == "hi"
        assert common.last_user_message([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]) == "a"
        assert common.last_user_message([{"role": "system", "content": "s"}]) == "s"
        assert common.last_user_message("text") == "text"
        assert common.last_user_message([]) == ""
        assert common.last_user_message(None) == ""

    def test_as_text(self):
        assert common.as_text(None) == ""
        assert common.as_text([{"role": "assistant", "content": "x"}]) == "x"
        assert common.as_text("y") == "y"

    def test_column(self):
        assert common.column({}, "answer", 2) == ["", ""]
        assert common.column({"answer": ["a", "b"]}, "answer", 2) == ["a", "b"]
        with pytest.raises(ValueError):
            common.column({"answer": ["a"]}, "answer", 2)


class TestThinkFormat:
    def test_scores(self):
        reward = formatting.think_format()
        completions = [
            "<think>6*7=42</think> 42",  # opens with cot_start: fine
            "6*7=42</think> 42",  # cot_start prefilled by the template
            "42",  # no cot_end
            "<think>a</think> b </think>",  # two cot_end
            "<think>a <think> b</think> c",  # cot_start again
            "",
            "   ",
        ]
        assert call(reward, completions) == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]

    def test_custom_tags_and_scores(self):
        reward = formatting.think_format(cot_start="Thought Process:", cot_end="Answer:", pass_score=0.5, fail_score=-1.0)
        assert call(reward, ["reasoning\nAnswer: 4", "4"]) == [0.5, -1.0]

    def test_no_cot_end_passes_non_blank(self):
        reward = formatting.think_format(cot_start=None, cot_end=None)
        assert call(reward, ["anything", ""]) == [1.0, 0.0]


class TestSimilarityGate:
    def test_reasoning_vs_answer(self):
        gate = formatting.similarity_gate()
        completions = [
            "<think>The sky is blue.</think> The sky is blue.",
            "<think>Rayleigh scattering favours short wavelengths.</think> Blue.",
            "no reasoning section at all",
            "<think></think>",  # both empty: identical
        ]
        assert call(gate, completions) == [0.1, 1.0, 1.0, 0.1]

    def test_threshold_boundary(self):
        # "abcd" vs "abce": ratio 0.75 exactly
        assert formatting.similarity("abcd", "abce") == 0.75
        assert call(formatting.similarity_gate(threshold=75), ["abcd</think>abce"]) == [0.1]
        assert call(formatting.similarity_gate(threshold=76), ["abcd</think>abce"]) == [1.0]

    def test_compare_to_prompt(self):
        gate = formatting.similarity_gate(compare_to="prompt", penalty_score=0.0)
        prompts = [user("Translate: the cat sleeps"), user("Translate: the cat sleeps")]
        completions = ["<think>hmm</think>Translate: the cat sleeps", "<think>hmm</think>le chat dort"]
        assert gate(prompts, completions) == [0.0, 1.0]

    def test_cot_end_unset(self):
        gate = formatting.similarity_gate(cot_start=None, cot_end=None)
        assert call(gate, ["same</think>same"]) == [1.0]

    def test_bad_settings(self):
        with pytest.raises(ValueError):
            formatting.similarity_gate(compare_to="answer")
        with pytest.raises(ValueError):
            formatting.similarity_gate(threshold=900)


class TestExtraction:
    def test_boxed_nested(self):
        assert answers.extract_boxed(r"so \boxed{\frac{1}{2}} done") == r"\frac{1}{2}"
        assert answers.extract_boxed(r"\boxed{1} then \boxed{2}") == "2"
        assert answers.extract_boxed(r"\boxed{1} then \boxed{2") == "1"  # unclosed last one
        assert answers.extract_boxed("no box") is None

    def test_gsm8k(self):
        assert answers.extract_gsm8k("Natalia sold 48/2 = 24 clips.\n#### 72") == "72"
        assert answers.extract_gsm8k("#### 42\nextra text") == "42"
        assert answers.extract_gsm8k("####") is None
        assert answers.extract_gsm8k("42") is None

    def test_tag(self):
        assert answers.extract_tag("<answer> 4 </answer> <answer>5</answer>") == "5"
        assert answers.extract_tag("<answer>5") is None
        assert answers.extract_tag("<final>x</final>", tagname="final") == "x"

    def test_auto_order(self):
        assert answers.extract_final_answer("#### 1 <answer>2</answer>") == "2"
        assert answers.extract_final_answer(r"#### 1 \boxed{3}") == "3"
        assert answers.extract_final_answer("plain") is None

    @pytest.mark.parametrize(
        "text, value",
        [("42", 42), ("$1,234.50", 1234.5), ("18.0", 18), ("3/4", 0.75), (r"\frac{3}{4}", 0.75), ("-.5", -0.5),
         ("+7", 7), ("18 dollars", 18), ("10%", 10), ("5/0", None), ("", None), ("none", None),
         # one number or none: prose around it, or an expression, is not a number (issue 12, class 1)
         ("The answer is 42.", None), (r"\sqrt{2}", None), ("(1,2)", None), ("x^2+1", None), ("2x", None),
         # notation that does not change the value (class 3 and 4)
         (r"\frac12", 0.5), (r"\dfrac{1}{2}", 0.5), (r"\tfrac34", 0.75), (r"50\%", 50), (r"90^\circ", 90),
         (r"90^{\circ}", 90), ("x = 5", 5), (r"\$1,200", 1200), (r"3.5 \text{ cm}", 3.5), ("$5$", 5),
         ("1{,}000", 1000), ("72.", 72)],
    )
    def test_parse_number(self, text, value):
        parsed = answers.parse_number(text)
        assert (parsed is None) if value is None else (parsed == value)


class TestFinalAnswerMatch:
    def test_numeric_auto(self):
        reward = answers.final_answer_match()
        completions = ["<think>6*7</think>#### 42", "42", "<answer>$42.00</answer>", r"\boxed{42}", "41", "", None]
        assert call(reward, completions, answer=["Six sevens.\n#### 42"] * 7) == [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0]

    def test_numeric_last_number_fallback(self):
        reward = answers.final_answer_match()
        assert call(reward, ["48/2 = 24, 24 + 48 = 72", "72 or maybe 71"], answer=["72", "72"]) == [1.0, 0.0]
        assert call(reward, [r"so it is \frac{3}{4}"], answer=["0.75"]) == [1.0]

    def test_fractions_and_commas(self):
        reward = answers.final_answer_match()
        assert call(reward, ["#### 0.75", "#### 1,000", "#### 3/4"], answer=["3/4", "1000", "0.75"]) == [1.0, 1.0, 1.0]

    def test_reference_without_answer_is_none(self):
        reward = answers.final_answer_match()
        assert call(reward, ["42", "42", "42"], answer=["no number here", "", "   "]) == [None, None, None]
        assert call(reward, ["42"]) == [None]  # no answer column at all

    def test_specific_style_requires_marker(self):
        reward = answers.final_answer_match(answer_style="gsm8k")
        assert call(reward, ["#### 42", "<answer>42</answer>", "42"], answer=["42"] * 3) == [1.0, 0.0, 0.0]
        reward = answers.final_answer_match(answer_style="boxed")
        assert call(reward, [r"\boxed{42}", "#### 42"], answer=[r"\boxed{42}", "42"]) == [1.0, 0.0]
        reward = answers.final_answer_match(answer_style="tag", tagname="final")
        assert call(reward, ["<final>42</final>", "<answer>42</answer>"], answer=["42"] * 2) == [1.0, 0.0]

    def test_cot_end_hides_reasoning(self):
        reward = answers.final_answer_match(cot_start="<think>", cot_end="</think>")
        completions = ["<think>#### 42</think> #### 41", "<think>maybe 41</think> 42"]
        assert call(reward, completions, answer=["42", "42"]) == [0.0, 1.0]

    def test_reference_reasoning_stripped(self):
        reward = answers.final_answer_match(cot_start="<think>", cot_end="</think>")
        assert call(reward, ["<think>x</think> 42"], answer=["<think>maybe #### 41</think> #### 42"]) == [1.0]

    def test_exact(self):
        reward = answers.final_answer_match(mode="exact")
        completions = ["Paris", "paris.", "<answer>Paris</answer>", "It is Paris", "  Paris  ", "London"]
        assert call(reward, completions, answer=["#### Paris"] * 6) == [1.0, 1.0, 1.0, 0.0, 1.0, 0.0]
        assert call(reward, ["Paris"], answer=[""]) == [None]

    def test_exact_case_sensitive(self):
        reward = answers.final_answer_match(mode="exact", ignore_case=False)
        assert call(reward, ["paris", "Paris"], answer=["Paris"] * 2) == [0.0, 1.0]

    def test_scores(self):
        reward = answers.final_answer_match(correct_score=3.0, wrong_score=-1.0)
        assert call(reward, ["1", "2"], answer=["1", "1"]) == [3.0, -1.0]

    def test_bad_settings(self):
        with pytest.raises(ValueError):
            answers.final_answer_match(mode="fuzzy")
        with pytest.raises(ValueError):
            answers.final_answer_match(answer_style="latex")


class TestNumericIsStrict:
    """Issue 12, classes 1-3: a non-numeric answer is never read as its last number."""

    def test_non_numeric_reference_is_unparsed_not_its_last_number(self):
        reward = answers.final_answer_match()
        refs = [r"\sqrt{2}", "(1,2)", "x^2+1"]
        assert call(reward, [r"\boxed{2}", r"\boxed{2}", r"\boxed{1}"], answer=refs) == [None, None, None]

    def test_marked_expression_is_not_its_last_number(self):
        reward = answers.final_answer_match()
        assert call(reward, [r"\boxed{\sqrt{2}}", r"\boxed{2x}", r"\boxed{2}"], answer=["2"] * 3) == [0.0, 0.0, 1.0]

    def test_unmarked_completion_uses_last_standalone_number(self):
        reward = answers.final_answer_match()
        completions = ["so 24 + 48 = 72 apples.", r"it is \sqrt{2}", "x^2 where x = 2", r"so \frac12"]
        assert call(reward, completions, answer=["72", "2", "2", "0.5"]) == [1.0, 0.0, 1.0, 1.0]

    @pytest.mark.parametrize(
        "text, value",
        [("24 + 48 = 72 apples.", 72), ("so -3", -3), ("it is 7.", 7), ("10-3", None), ("a 5-6 range", None),
         (r"it is \sqrt{2}", None), ("x^2", None), ("2x", None), ("{3}", None), ("5!", None), (r"so \frac34", 0.75),
         ("\u22125 degrees", -5), ("no number", None)],
    )
    def test_last_standalone_number(self, text, value):
        found = answers.last_number(text)
        assert (found is None) if value is None else (found == value)

    def test_gsm8k_number_right_after_marker(self):
        reward = answers.final_answer_match(answer_style="gsm8k")
        references = ["#### 72", "#### 72", "#### 5 + 3 = 8"]
        assert call(reward, ["#### 72 clips", "#### 5 + 3 = 8", "#### 8"], answer=references) == [1.0, 0.0, 0.0]

    def test_boxed_without_braces_and_frac_shorthand(self):
        reward = answers.final_answer_match()
        completions = [r"$\boxed 5$", r"\boxed{\frac12}", r"\boxed{\dfrac{1}{2}}"]
        assert call(reward, completions, answer=["5", "0.5", r"\frac12"]) == [1.0, 1.0, 1.0]


class TestUnparsedReference:
    def test_counted_through_log_metric_and_warned_once(self, caplog):
        reward = answers.final_answer_match()
        logged = []
        columns = {"answer": [r"\sqrt{2}", "4", "x^2"], "log_metric": lambda name, value: logged.append((name, value))}
        with caplog.at_level("WARNING"):
            assert call(reward, ["2", "4", "1"], **columns) == [None, 1.0, None]
            assert call(reward, ["2", "4", "1"], **columns) == [None, 1.0, None]
        assert logged == [("rewards/final_answer_match/unparsed_reference", 2.0)] * 2
        warnings = [r for r in caplog.records if "unparsed_reference" in r.getMessage()]
        assert len(warnings) == 1 and "sqrt" in warnings[0].getMessage()

    def test_empty_reference_is_none_and_not_counted(self):
        logged = []
        reward = answers.final_answer_match(mode="math")
        assert call(reward, ["2"], answer=[""], log_metric=lambda n, v: logged.append(v)) == [None]
        assert logged == [0.0]

    def test_without_log_metric(self):
        assert call(answers.final_answer_match(), ["2"], answer=["x^2"]) == [None]


class TestMathMode:
    """Issue 12, class 4: MATH-style equivalence through math-verify."""

    @pytest.mark.parametrize(
        "given, reference, right",
        [(r"\boxed{0.5}", r"\frac{1}{2}", True), (r"\boxed{\dfrac{1}{2}}", "0.5", True), (r"\boxed{50\%}", "50", True),
         (r"\boxed{90^\circ}", "90", True), (r"\boxed{x = 5}", "5", True), (r"\boxed{[1,2)}", r"[1, 2)", True),
         (r"\boxed{(1,2]}", r"[1, 2)", False), (r"\boxed{\{2,1\}}", r"\{1,2\}", True),
         (r"\boxed{2\sqrt{3}}", r"\sqrt{12}", True),
         (r"\boxed{2}", r"\sqrt{2}", False), (r"\boxed{2}", "(1,2)", False), (r"\boxed{1}", "x^2+1", False),
         (r"\boxed{x^2+1}", "$1 + x^2$", True), (r"\boxed{\frac{64}{400}}", r"\frac{63}{400}", False),
         ("The answer is $\\frac{1}{3}$.", r"\frac13", True), ("", "5", False), ("#### 1,200", r"\$1,200", True)],
    )
    def test_equivalence(self, given, reference, right):
        reward = answers.final_answer_match(mode="math")
        assert call(reward, [given], answer=[reference]) == [1.0 if right else 0.0]

    def test_unparseable_reference(self):
        reward = answers.final_answer_match(mode="math")
        assert call(reward, [r"\boxed{42}"], answer=["forty two"]) == [None]
        assert call(reward, [r"\boxed{forty two}"], answer=["forty two"]) == [None]  # same text, still not math

    def test_written_like_the_reference(self):
        reward = answers.final_answer_match(mode="math")
        completions = [r"\boxed{\left(1, \sqrt{2}\right)}", r"\boxed{(1,\sqrt{3})}", r"\boxed{$x^2+1$}"]
        assert call(reward, completions, answer=[r"(1,\sqrt{2})", r"(1,\sqrt{2})", "x^2 + 1"]) == [1.0, 0.0, 1.0]

    def test_pathological_case_is_cut_off(self):
        reward = answers.final_answer_match(mode="math", timeout_s=1)
        assert call(reward, [r"\boxed{10^{10^{10}}}", r"\boxed{5}"], answer=["5", "5"]) == [0.0, 1.0]

    def test_in_a_worker_thread(self):
        """TRL calls our (async) combined reward on its event-loop thread, where signal.alarm is unavailable:
        pairs go to a helper process whose own time limits still hold."""
        import threading

        reward = answers.final_answer_match(mode="math", timeout_s=1)
        results = []
        thread = threading.Thread(target=lambda: results.append(
            call(reward, [r"\boxed{\frac{1}{3}}", r"\boxed{10^{10^{10}}}"], answer=[r"\frac13", "5"])))
        thread.start()
        thread.join(120)
        assert not thread.is_alive()
        assert results == [[1.0, 0.0]]

    def test_helpers_start_from_a_script_without_a_main_guard(self, tmp_path):
        """multiprocessing's spawn would re-run such a script in each child; our helpers are plain processes."""
        script = tmp_path / "train.py"
        script.write_text(
            "import sys, threading\n"
            f"sys.path.insert(0, {str(ROOT)!r})\n"
            "from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.builtin.answers import (\n"
            "    final_answer_match)\n"
            "reward = final_answer_match(mode='math')\n"
            "out = []\n"
            "t = threading.Thread(target=lambda: out.append(reward([[]] * 2, [r'\\boxed{\\sqrt{12}}', r'\\boxed{3}'],"
            " answer=[r'2\\sqrt{3}'] * 2)))\n"
            "t.start(); t.join()\n"
            "print('RESULT', out)\n"
        )
        result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        assert result.stdout.count("RESULT") == 1 and "RESULT [[1.0, 0.0]]" in result.stdout
        assert "Traceback" not in result.stderr

    def test_bad_timeout(self):
        with pytest.raises(ValueError):
            answers.final_answer_match(mode="math", timeout_s=0.5)


class TestGsm8kAliases:
    def test_correctness_scores_two(self):
        for name in ("gsm8k_correctness", "gsm8k_reward"):
            reward = REWARD_FUNCTIONS.get(name)()
            assert call(reward, ["<answer>72</answer>", "<answer>71</answer>"], answer=["... #### 72"] * 2) == [2.0, 0.0]

    def test_integer_response(self):
        reward = answers.gsm8k_integerresponse()
        completions = ["<answer>42</answer>", "<answer>-3</answer>", "<answer>1,000</answer>", "<answer>$18</answer>",
                       "<answer>4.5</answer>", "<answer>forty</answer>", "42", "about 42", ""]
        assert call(reward, completions) == [0.5, 0.5, 0.5, 0.5, 0.0, 0.0, 0.5, 0.0, 0.0]

    def test_integer_response_tag_style(self):
        reward = answers.gsm8k_integerresponse(answer_style="tag", score=1.0)
        assert call(reward, ["42", "<answer>42</answer>"]) == [0.0, 1.0]


class TestGecEditF1:
    PROMPT = user("Correct this: She go to school yesterday and he like it.")
    TARGET = "She went to school yesterday and he liked it."

    def score(self, hypothesis, target=TARGET, **kwargs):
        reward = gec.gec_edit_f1(source_prefix="Correct this: ", **kwargs)
        return reward([self.PROMPT], [hypothesis], answer=[target])[0]

    def test_perfect(self):
        assert self.score(self.TARGET) == 1.0

    def test_half_the_edits(self):
        # hypothesis makes 1 of the 2 target edits and nothing else: P = 1, R = 0.5
        assert self.score("She went to school yesterday and he like it.", beta=1.0) == pytest.approx(2 / 3)
        assert self.score("She went to school yesterday and he like it.") == pytest.approx(5 / 6)  # F0.5 default

    def test_wrong_edit(self):
        # one right edit, one wrong edit: P = 0.5, R = 0.5
        assert self.score("She went to school yesterday and he likes it.") == 0.5

    def test_no_edits_cases(self):
        assert self.score("She go to school yesterday and he like it.") == 0.0  # needed edits, made none
        correct = "She went to school yesterday and he liked it."
        reward = gec.gec_edit_f1()
        prompts = [user(correct)] * 2
        assert reward(prompts, [correct, correct + "!"], answer=[correct] * 2) == [1.0, 0.0]

    def test_missing_reference_is_none(self):
        reward = gec.gec_edit_f1()
        assert reward([self.PROMPT, self.PROMPT], ["x", "y"], answer=["", "  "]) == [None, None]
        assert reward([self.PROMPT], ["x"]) == [None]

    def test_prefix_absent_uses_whole_message(self):
        reward = gec.gec_edit_f1(source_prefix="Fix: ")
        assert reward([user("He go home.")], ["He goes home."], answer=["He goes home."]) == [1.0]

    def test_reasoning_stripped(self):
        reward = gec.gec_edit_f1(cot_start="<think>", cot_end="</think>")
        assert reward([user("He go home.")], ["<think>verb</think> He goes home."], answer=["He goes home."]) == [1.0]
        assert reward([user("He go home.")], ["He goes home."], answer=["<think>v</think>He goes home."]) == [1.0]

    def test_edits_and_tokens(self):
        assert gec.tokenize("Hi, you!") == ["Hi", ",", "you", "!"]
        assert gec.edits(["a", "b"], ["a", "b"]) == set()
        assert gec.edits(["a", "b"], ["a"]) == {(1, 2, ())}
        assert gec.edit_fscore("", "", "") == 1.0
        assert gec.edit_fscore("", "x", "x") == 1.0
        assert gec.edit_fscore("a b", "", "a b") == 0.0

    def test_bad_beta(self):
        with pytest.raises(ValueError):
            gec.gec_edit_f1(beta=0)

    def test_adjacent_edits_are_split(self):
        """Issue 12, class 5: difflib made "at mat" -> "on the mat" one edit; M2 and ERRANT count two."""
        tokens = gec.tokenize("The cat sat at mat .")
        assert gec.edits(tokens, gec.tokenize("The cat sat on the mat .")) == {(3, 4, ("on",)), (4, 4, ("the",))}
        # partial corrections get partial credit: one of two edits, no wrong one
        assert gec.edit_counts("The cat sat at mat .", "The cat sat on mat .", "The cat sat on the mat .") == (1, 0, 1)
        target = "The cat sat on the mat ."
        assert gec.edit_counts("The cat sat at mat .", "The cat sat at the mat .", target) == (1, 0, 1)

    def test_insertion_and_deletion_runs_merge(self):
        tokens = gec.tokenize("I want go home")
        assert gec.edits(tokens, gec.tokenize("I want to go home")) == {(2, 2, ("to",))}
        assert gec.edits(tokens, gec.tokenize("I really do want go home")) == {(1, 1, ("really", "do"))}
        assert gec.edits(gec.tokenize("a b c d"), gec.tokenize("a d")) == {(1, 3, ())}

    def test_alignment_prefers_same_class_and_stem(self):
        assert gec.edits(gec.tokenize("He go home"), gec.tokenize("He goes home")) == {(1, 2, ("goes",))}
        assert gec.substitution_cost("go", "goes") < gec.substitution_cost("go", "went")
        assert gec.substitution_cost("The", "the") == 0.0

    def test_several_references_best_counts(self):
        reward = gec.gec_edit_f1()
        prompts = [user("The dog .")] * 2
        refs = [["The dogs .", "The dog ."]] * 2  # annotator 1 says: no edit needed
        assert reward(prompts, ["The dog .", "The dogs ."], answer=refs) == [1.0, 1.0]
        assert reward([user("The dog .")], ["A dog ."], answer=[["The dogs .", "The dog ."]]) == [0.0]

    def test_references_column(self):
        reward = gec.gec_edit_f1(references_column="references")
        assert reward([user("He go home.")], ["He goes home."], answer=["unused"],
                      references=[["He went home.", "He goes home."]]) == [1.0]
        assert reward([user("He go home.")], ["He goes home."], references=[[]]) == [None]

    def test_long_texts_with_edits_at_both_ends(self):
        """Too large for the exact table (300 x 300 tokens): difflib's anchors split it, edits still exact."""
        middle = " ".join(f"w{i}" for i in range(296))
        source = f"He go to {middle} at mat ."
        target = f"He goes to {middle} on the mat ."
        assert len(gec.tokenize(source)) ** 2 > gec.MAX_CELLS
        assert gec.edit_counts(source, target, target) == (3, 0, 0)
        assert gec.edit_counts(source, f"He goes to {middle} at the mat .", target) == (2, 0, 1)

    def test_long_texts_stay_cheap(self):
        source = " ".join(f"w{i}" for i in range(3000))
        assert gec.edit_counts(source, source.replace("w1500 ", "x "), source) == (0, 1, 0)


class TestLengthReward:
    def test_plateau_and_slopes(self):
        reward = length.length_reward(target_length=10, plateau=2, unit="words")
        texts = [" ".join(["w"] * n) for n in (0, 4, 8, 10, 12, 16, 20, 30)]
        assert call(reward, texts) == [0.0, 0.5, 1.0, 1.0, 1.0, 0.5, 0.0, 0.0]

    def test_chars(self):
        reward = length.length_reward(target_length=4, plateau=0, unit="chars")
        assert call(reward, ["abcd", "ab", "abcdef", ""]) == [1.0, 0.5, 0.5, 0.0]

    def test_measures_answer_only(self):
        reward = length.length_reward(target_length=2, plateau=0, cot_end="</think>")
        assert call(reward, ["long long long reasoning</think> two words"]) == [1.0]

    def test_bad_settings(self):
        bad = ({"unit": "tokens"}, {"target_length": 10, "plateau": 10}, {"plateau": -1}, {"target_length": 0, "plateau": 0})
        for kwargs in bad:
            with pytest.raises(ValueError):
                length.length_reward(**kwargs)


class TestMaxLength:
    def test_words(self):
        reward = length.max_length(max_words=4)
        texts = ["a", "a b c d", "a b c d e f", " ".join(["w"] * 8), " ".join(["w"] * 50)]
        assert call(reward, texts) == [1.0, 1.0, 0.5, 0.0, 0.0]

    def test_blank_answer_scores_zero(self):
        reward = length.max_length(max_words=4, cot_end="</think>")
        assert call(reward, ["", "  \n ", None, "<think>all reasoning</think>"]) == [0.0, 0.0, 0.0, 0.0]

    def test_chars_and_both(self):
        assert call(length.max_length(max_chars=10), ["x" * 10, "x" * 15]) == [1.0, 0.5]
        both = length.max_length(max_words=100, max_chars=10)
        assert call(both, ["x" * 15]) == [0.5]  # the stricter limit counts

    def test_answer_only(self):
        reward = length.max_length(max_words=1, cot_end="</think>")
        assert call(reward, ["many many words of reasoning</think> Yes."]) == [1.0]

    def test_needs_a_limit(self):
        with pytest.raises(ValueError):
            length.max_length()
        with pytest.raises(ValueError):
            length.max_length(max_words=0)


class TestRepetitionPenalty:
    def test_scores(self):
        reward = repetition.repetition_penalty(ngram_size=2)
        texts = ["the cat sat on the mat", "go go go go go", "a b a b a", "one", ""]
        assert call(reward, texts) == [1.0, 0.25, 0.5, 1.0, 1.0]

    def test_unspaced_scripts(self):
        """Issue 12, class 6: Chinese and Japanese have no spaces; each character counts as a word."""
        reward = repetition.repetition_penalty(ngram_size=2)
        assert call(reward, ["我喜欢猫。", "好好好好好", "猫が好きです猫が好きです"]) == [1.0, 0.25, pytest.approx(1 - 5 / 11)]
        assert repetition.words("I said 你好 twice") == ["i", "said", "你", "好", "twice"]

    def test_case_insensitive_and_max_penalty(self):
        reward = repetition.repetition_penalty(ngram_size=1, max_penalty=0.5)
        assert call(reward, ["Yes yes YES yes"]) == [1.0 - 0.5 * 0.75]

    def test_bad_settings(self):
        with pytest.raises(ValueError):
            repetition.repetition_penalty(ngram_size=0)
        with pytest.raises(ValueError):
            repetition.repetition_penalty(max_penalty=-1)


class TestThroughTheCombinedReward:
    """The way training calls a built-in: resolved from a config, inside CombinedReward (sync rewards in a
    worker thread, TRL's log_metric forwarded in the columns)."""

    def test_math_mode_and_unparsed_reference_metric(self):
        import asyncio

        from generation.core_pipelines.do_grpo_rl_with_a_prompt.config.files import validate_config
        from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.combined import CombinedReward
        from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.plan import resolve_rewards

        config = validate_config({
            "model": {"base_model_name": "m"},
            "datasets": [{"path": "a.jsonl", "reward_funcs": [{"name": "final_answer_match", "mode": "math"}]}],
        })
        combined = CombinedReward(resolve_rewards(config))
        metrics = {}
        prompts = [[{"role": "user", "content": "q"}]] * 3
        completions = [r"\boxed{2\sqrt{3}}", r"\boxed{3}", r"\boxed{1}"]
        scores = asyncio.run(combined(prompts, completions, answer=[r"\sqrt{12}", r"\sqrt{12}", "forty two"],
                                      log_metric=metrics.__setitem__))
        assert scores == [1.0, 0.0, None]
        assert metrics["rewards/final_answer_match/unparsed_reference"] == 1.0
        assert metrics["rewards/final_answer_match/none_count"] == 1.0
