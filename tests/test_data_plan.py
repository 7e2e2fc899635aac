"""data_plan.py: which rewards read `answer`, and the plan's per-dataset lines."""

from __future__ import annotations

from dataclasses import dataclass

from test_data import sample, write

from generation.core_pipelines.do_grpo_rl_with_a_prompt.config.schema import GRPOPipelineConfig
from generation.core_pipelines.do_grpo_rl_with_a_prompt.plan import (
    ANSWER_READING_BUILTINS,
    describe_data,
    reads_answer,
    shorten,
)
from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.registry import load_reward_modules
from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.plan import resolve_rewards


def test_the_answer_reading_builtins_are_registered():
    assert ANSWER_READING_BUILTINS <= set(load_reward_modules().names())


def test_reads_answer_rules():
    def by_parameter(prompts, completions, answer, **columns): ...

    def by_columns(prompts, completions, **columns): ...

    class Callable:
        def __call__(self, prompts, completions, answer=None, **columns): ...

    def declared(prompts, completions, **columns): ...

    declared.reads_answer = True
    assert reads_answer("mine", by_parameter) and reads_answer("mine", Callable()) and reads_answer("mine", declared)
    assert not reads_answer("mine", by_columns)
    assert reads_answer("final_answer_match", by_columns)
    by_columns.reads_answer = False  # a declaration wins over the name
    assert not reads_answer("final_answer_match", by_columns)


def test_a_judge_reads_answer_when_its_prompt_shows_it():
    @dataclass
    class Prompt:
        messages: list

    class Judge:
        def __init__(self, text):
            self.prompt = Prompt([{"role": "user", "content": text}])

        async def __call__(self, prompts, completions, **columns): ...

    assert reads_answer("generic_llm_reward", Judge("Reference: {answer}\n{output_text}"))
    assert not reads_answer("generic_llm_reward", Judge("Grade {output_text}; literal {{answer}}"))


def test_plan_names_the_layout_sample_and_warns_only_where_answers_are_empty(tmp_path):
    with_answers = write(tmp_path / "math.jsonl", [{"problem": "1+1\nquickly", "solution": "2"}] * 3)
    without = write(tmp_path / "open.jsonl", [{"prompt": "Say hi"}] * 3)
    config = GRPOPipelineConfig.model_validate({
        "model": {"base_model_name": "m"},
        "datasets": [{"path": str(with_answers), "percentage": 0.5, "reward_funcs": [{"name": "final_answer_match"}]},
                     {"path": str(without), "percentage": 0.5, "reward_funcs": [{"name": "max_length", "max_words": 3}]},
                     {"path": str(without), "name": "open2", "percentage": 0.5,
                      "reward_funcs": [{"name": "gsm8k_correctness"}]}],
        "dataset_settings": {"total_rows": 4},
    })
    data = sample([d.model_dump() for d in config.datasets], total_rows=4)
    text = describe_data(config, data, resolve_rewards(config))
    assert "math: layout problem/solution (auto-detected)" in text
    assert "  sample prompt: [user] 1+1⏎quickly" in text and "  sample answer: 2" in text
    assert "warning: dataset 'open2'" in text and "gsm8k_correctness" in text
    assert "warning: dataset 'open'" not in text and "warning: dataset 'math'" not in text


def test_shorten_keeps_one_line():
    assert shorten("a\nb") == "a⏎b"
    assert shorten("x" * 500, 10) == "x" * 9 + "…"
