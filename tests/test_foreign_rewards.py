"""Rewards written for TRL (dotted import paths, factories) or for Augmentoolkit (per_sample=True), run unchanged.

TRL's own reward functions are the reference: a reward named by its path must score every completion exactly as
TRL's function scores it when GRPOTrainer calls it (conversational data: completions are one-message lists).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from trl.rewards import get_soft_overlong_punishment, think_format_reward

import run_augmentoolkit
from generation.core_pipelines.do_grpo_rl_with_a_prompt.config.files import validate_config
from generation.core_pipelines.do_grpo_rl_with_a_prompt.pipeline import run_grpo_pipeline
from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.columns import check_columns_read, columns_read
from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.combined import CombinedReward
from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.plan import resolve_rewards
from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.results import RewardFunctionError
from generation.errors import UserInputError
from test_pipeline_e2e import sharegpt_file, tiny_config

ROOT = Path(__file__).resolve().parents[1]
PROMPT = [{"role": "system", "content": "Think first."}, {"role": "user", "content": "2+2?"}]
TEXTS = ["<think>\nadd them\n</think>\n4", "<think>\nno close tag\n4", "4", "<think>a</think><think>b</think>4"]


def config(reward_funcs: list[dict], **reward) -> object:
    return validate_config({"model": {"base_model_name": "m"}, "reward": reward,
                            "datasets": [{"path": "a.jsonl", "reward_funcs": reward_funcs}]})


def write_module(folder: Path, name: str, source: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    return path


def trl_call(combined: CombinedReward, texts: list[str], ids: list[list[int]] | None = None, **columns):
    """CombinedReward called the way GRPOTrainer calls a reward function on conversational data."""
    n = len(texts)
    metrics: dict = {}
    columns = {"answer": ["4"] * n, "dataset_name": ["a"] * n, "source": [f"a:{i // 2}" for i in range(n)], **columns}
    rewards = asyncio.run(combined(
        prompts=[PROMPT] * n, completions=[[{"role": "assistant", "content": t}] for t in texts],
        completion_ids=ids or [[7] * (i + 1) for i in range(n)], trainer_state="STATE", log_extra=lambda *a: None,
        log_metric=metrics.__setitem__, **columns))
    return rewards, metrics


# ------------------------------------------------------------------------------------------ TRL, by path


def test_trl_think_format_reward_by_path_scores_as_trl_does():
    plan = resolve_rewards(config([{"name": "trl.rewards.think_format_reward"}]))
    (reward,) = plan.per_dataset["a"]
    assert reward.label == "think_format_reward" and "TRL reward function trl.rewards.think_format_reward" in plan.describe()
    rewards, metrics = trl_call(CombinedReward(plan), TEXTS)
    expected = think_format_reward([[{"role": "assistant", "content": t}] for t in TEXTS])
    assert rewards == expected == [1.0, 0.0, 0.0, 0.0]
    assert metrics["rewards/think_format_reward/mean"] == pytest.approx(0.25)


def test_a_factory_is_called_once_with_the_entry_keys_and_scores_as_trl_does():
    entry = {"name": "trl.rewards.get_soft_overlong_punishment", "max_completion_len": 10, "soft_punish_cache": 4}
    plan = resolve_rewards(config([entry]))
    (reward,) = plan.per_dataset["a"]
    assert reward.label == "get_soft_overlong_punishment" and "TRL reward factory" in reward.origin
    ids = [[1] * length for length in (3, 6, 8, 10, 12)]
    rewards, _ = trl_call(CombinedReward(plan), ["x"] * 5, ids=ids)
    assert rewards == get_soft_overlong_punishment(10, 4)(ids) == [0.0, 0.0, -0.5, -1.0, -1.0]


def test_the_short_names_of_trls_grpo_script_are_trls_functions_with_the_scripts_settings():
    plan = resolve_rewards(config([{"name": "think_format_reward"}]))
    assert "TRL reward function trl.rewards.think_format_reward" in plan.per_dataset["a"][0].origin
    expected = think_format_reward([[{"role": "assistant", "content": t}] for t in TEXTS])
    assert trl_call(CombinedReward(plan), TEXTS)[0] == expected
    ids = [[1] * length for length in (3, 1030, 1100, 1280, 12)]
    for entry, (max_completion_len, soft_punish_cache) in (
            ({}, (1280, 256)),  # what trl/scripts/grpo.py binds
            ({"max_completion_len": 10, "soft_punish_cache": 4}, (10, 4))):  # the entry's own keys win
        plan = resolve_rewards(config([{"name": "get_soft_overlong_punishment", **entry}]))
        assert "TRL reward factory trl.rewards.get_soft_overlong_punishment" in plan.per_dataset["a"][0].origin
        expected = get_soft_overlong_punishment(max_completion_len, soft_punish_cache)(ids)
        assert trl_call(CombinedReward(plan), ["x"] * 5, ids=ids)[0] == expected
    assert get_soft_overlong_punishment(1280, 256)(ids) == [0.0, -0.0234375, -0.296875, -1.0, 0.0]


def test_accuracy_reward_by_its_short_name_reads_the_solution_column_of_problem_solution_rows(tmp_path, tiny_model_dir):
    from trl.rewards import accuracy_reward

    rows = [{"problem": "What is $1+1$?", "solution": "The answer is $\\boxed{2}$."},
            {"problem": "What is $2+2$?", "solution": "So $\\boxed{4}$."}] * 4
    data = tmp_path / "math.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    path = tiny_config(tmp_path, tiny_model_dir)
    edit = yaml.safe_load(path.read_text())
    edit["datasets"][0].update(path=str(data), reward_funcs=[{"name": "accuracy_reward"}])
    path.write_text(yaml.safe_dump(edit))
    status = run_augmentoolkit.main(["--node", "grpo-rl-pipeline", "--config", str(path), "--dry-run"])
    assert status == 0  # `solution` stays a column beside `answer`: the start-up column check finds it
    plan = resolve_rewards(config([{"name": "accuracy_reward"}]))
    texts = ["$\\boxed{2}$", "It is 3.", "$2$", "\\boxed{5}"]
    solutions = ["$\\boxed{2}$", "$\\boxed{2}$", "$\\boxed{4}$", "$\\boxed{4}$"]
    rewards, _ = trl_call(CombinedReward(plan), texts, solution=solutions)
    assert rewards == accuracy_reward([[{"role": "assistant", "content": t}] for t in texts], solutions) == \
        [1.0, 0.0, 0.0, 0.0]


def test_a_plain_function_gets_exactly_trls_arguments_and_its_keys(tmp_path):
    write_module(tmp_path, "trl_style_probe", """
        SEEN = []
        CREATED = []

        def brevity(completions, max_words, topic, prompts=None, completion_ids=None, **kwargs):
            SEEN.append(dict(kwargs, completions=completions, prompts=prompts, completion_ids=completion_ids,
                             max_words=max_words, topic=topic))
            kwargs["log_metric"]("brevity/calls", 1.0)
            return [1.0 if len(c[0]["content"].split()) <= max_words else 0.0 for c in completions]

        def make_counter(offset=0.0):
            CREATED.append(offset)
            return lambda completions, **kwargs: [offset + len(c[0]["content"]) for c in completions]
    """)
    cfg = validate_config({"model": {"base_model_name": "m"}, "datasets": [{"path": "a.jsonl", "reward_funcs": [
        {"name": "trl_style_probe.brevity", "max_words": 1, "weight": 2.0},
        {"name": "trl_style_probe.make_counter", "offset": 0.5}]}]})
    plan = resolve_rewards(cfg, config_dir=tmp_path)
    import trl_style_probe  # importable now: the config's folder is on the path

    assert trl_style_probe.CREATED == [0.5]  # the factory ran once, at start-up
    brevity = plan.per_dataset["a"][0]
    assert columns_read(brevity.function).required == ("topic",)  # max_words is bound: not a column
    rewards, metrics = trl_call(CombinedReward(plan), ["4", "it is 4"], topic=["math", "math"])
    assert rewards == [2 * 1.0 + 1.5, 2 * 0.0 + 7.5]  # weights apply
    (seen,) = trl_style_probe.SEEN
    assert seen["completions"] == [[{"role": "assistant", "content": "4"}], [{"role": "assistant", "content": "it is 4"}]]
    assert seen["prompts"] == [PROMPT, PROMPT] and seen["completion_ids"] == [[7], [7, 7]]
    assert seen["topic"] == ["math", "math"] and seen["answer"] == ["4", "4"] and seen["max_words"] == 1
    assert seen["trainer_state"] == "STATE" and {"log_metric", "log_extra", "dataset_name", "source"} <= set(seen)
    assert metrics["brevity/calls"] == 1.0 and metrics["rewards/brevity/mean"] == 0.5


def test_the_working_directory_is_importable_too(tmp_path, monkeypatch):
    write_module(tmp_path / "cwd", "cwd_rewards", "def short(completions, **kwargs):\n    return [0.25] * len(completions)\n")
    monkeypatch.chdir(tmp_path / "cwd")
    plan = resolve_rewards(config([{"name": "cwd_rewards.short"}]), config_dir=tmp_path / "elsewhere")
    assert trl_call(CombinedReward(plan), ["a", "b"])[0] == [0.25, 0.25]


@pytest.mark.parametrize("entry, message", [
    ({"name": "no_such_module.reward"}, "no module named 'no_such_module'"),
    ({"name": "trl.rewards.think_format_rewrd"}, "has no attribute 'think_format_rewrd' (did you mean 'think_format_reward'?)"),
    ({"name": "trl.rewards.think_format_rewrd"}, "nearest registered rewards: think_format"),
    ({"name": "trl.rewards.think_format_reward", "max_words": 3}, "unexpected keyword argument 'max_words'"),
    ({"name": "trl.rewards.get_soft_overlong_punishment", "max_completion_len": 10},
     "missing a required argument: 'soft_punish_cache'"),
])
def test_what_cannot_be_found_or_bound_is_a_start_up_error(entry, message):
    with pytest.raises(UserInputError) as error:
        resolve_rewards(config([entry]))
    assert message in str(error.value) and entry["name"] in str(error.value)  # names the reward


def test_a_bad_dotted_path_exits_2_at_dry_run_with_one_line(tmp_path, tiny_model_dir, capsys):
    path = tiny_config(tmp_path, tiny_model_dir)
    status = run_augmentoolkit.main(["--node", "grpo-rl-pipeline", "--config", str(path), "--dry-run",
                                     "--set", "datasets.0.reward_funcs=[{name: my_rewardz.max_lenght}]"])
    err = capsys.readouterr().err
    assert status == 2 and "no module named 'my_rewardz'" in err and "Traceback" not in err
    assert "nearest registered rewards: max_length" in err and len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------------------------- reward.modules


def test_decorated_rewards_in_the_users_own_file_beside_the_config(tmp_path):
    write_module(tmp_path, "hobby_rewards", """
        from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.registry import register_reward_function

        @register_reward_function("hobby_exclaims")
        def exclaims(bonus: float = 1.0):
            def reward(prompts, completions, **columns):
                return [bonus if "!" in c else 0.0 for c in completions]
            return reward
    """)
    cfg = validate_config({"model": {"base_model_name": "m"}, "reward": {"modules": ["hobby_rewards.py"]},
                           "datasets": [{"path": "a.jsonl", "reward_funcs": [{"name": "hobby_exclaims", "bonus": 2},
                                                                             {"name": "hobby_rewards.exclaims"}]}]})
    plan = resolve_rewards(cfg, config_dir=tmp_path)
    assert [r.label for r in plan.per_dataset["a"]] == ["hobby_exclaims", "exclaims"]  # a path to it works too
    assert trl_call(CombinedReward(plan), ["hi!", "hi"])[0] == [3.0, 0.0]


def test_reward_modules_errors_name_the_entry(tmp_path):
    write_module(tmp_path, "broken_rewards", "import no_such_dependency\n")
    for modules, message in ((["missing.py"], "file 'missing.py' not found"),
                             (["broken_rewards.py"], "importing 'broken_rewards' raised ModuleNotFoundError"),
                             (["no_such_pkg.rewards"], "no module named 'no_such_pkg'")):
        with pytest.raises(UserInputError, match="reward.modules") as error:
            resolve_rewards(config([{"name": "max_length"}], modules=modules), config_dir=tmp_path)
        assert message in str(error.value)


# ------------------------------------------------------------------------- Augmentoolkit, per sample

# Upstream's reward_functions.py (e-p-armstrong/augmentoolkit, generation/core_pipelines/do_grpo_rl_with_a_prompt),
# copied unchanged but for the decorator line (`per_sample=True`) and the import of our decorator.
UPSTREAM = '''
import asyncio
import re

from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.registry import register_reward_function

IN_FLIGHT = [0, 0]


def extract_xml_answer(text: str, tagname: str = "answer") -> str:
    """Extract answer from XML-formatted text."""

    # Remove any text between <think> and </think> tags
    pattern = r"<think>.*?</think>"
    text = re.sub(pattern, "", text, flags=re.DOTALL)

    answer = text.split(f"<{tagname}>")[-1]
    answer = answer.split(f"</{tagname}>")[0]
    return answer.strip()


@register_reward_function("atk_integerresponse", per_sample=True)
def int_reward_func(tagname: str = "answer"):
    def inner(completions, **kwargs) -> float:
        """Reward function for integer responses."""
        response = completions[0]["content"]
        extracted_response = extract_xml_answer(response, tagname=tagname)
        return 0.5 if extracted_response.isdigit() else 0.0

    return inner


@register_reward_function("atk_async_overlap", per_sample=True)
def async_overlap(format_score=0.1, **kwargs):
    async def inner(prompts, completions, **kwargs) -> float:
        IN_FLIGHT[0] += 1
        IN_FLIGHT[1] = max(IN_FLIGHT)
        await asyncio.sleep(0.05)
        IN_FLIGHT[0] -= 1
        input_text = prompts[-1]["content"]
        output_text = completions[-1]["content"]
        if not output_text:
            return format_score
        return float(output_text.strip() == kwargs["answer"]) + (0.25 if "2+2" in input_text else 0.0)

    return inner
'''


def test_augmentoolkits_per_completion_rewards_run_unchanged(tmp_path):
    (tmp_path / "atk_ported_rewards.py").write_text(UPSTREAM)
    cfg = validate_config({"model": {"base_model_name": "m"}, "reward": {"modules": ["atk_ported_rewards.py"]},
                           "datasets": [{"path": "a.jsonl", "reward_funcs": [
                               {"name": "atk_integerresponse", "tagname": "answer"},
                               {"name": "atk_async_overlap", "format_score": 0.1}]}]})
    plan = resolve_rewards(cfg, config_dir=tmp_path)
    sync, overlap = plan.per_dataset["a"]
    assert (sync.is_async, overlap.is_async) == (False, True) and "per sample" in plan.describe()
    texts = ["<answer>4</answer>", "<think>x</think><answer>four</answer>", "", "4", "5", "<answer>12</answer>"]
    rewards, metrics = trl_call(CombinedReward(plan), texts)
    import atk_ported_rewards

    assert metrics["rewards/atk_integerresponse/mean"] == pytest.approx((0.5 + 0 + 0 + 0.5 + 0.5 + 0.5) / 6)
    overlap_scores = [0.0 + 0.25, 0.25, 0.1, 1.25, 0.25, 0.25]
    assert rewards == pytest.approx([s + o for s, o in zip([0.5, 0, 0, 0.5, 0.5, 0.5], overlap_scores)])
    assert atk_ported_rewards.IN_FLIGHT[1] == len(texts)  # async per-completion calls ran concurrently


def test_a_per_sample_reward_keeps_the_result_checks_and_reads_columns_by_name(tmp_path):
    (tmp_path / "atk_checked_rewards.py").write_text(textwrap.dedent('''
        from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.registry import register_reward_function

        @register_reward_function("atk_returns_text", per_sample=True)
        def returns_text():
            def inner(completions, **kwargs):
                return "1.0"
            return inner

        @register_reward_function("atk_reads_prompt", per_sample=True)
        def reads_prompt():
            def inner(prompt, completions, answer, **kwargs):
                return 1.0
            return inner
    '''))
    cfg = config([{"name": "atk_returns_text"}], modules=["atk_checked_rewards.py"])
    with pytest.raises(RewardFunctionError, match="reward 'atk_returns_text' \\(dataset 'a'\\)"):
        trl_call(CombinedReward(resolve_rewards(cfg, config_dir=tmp_path)), ["x", "y"])
    cfg = config([{"name": "atk_reads_prompt"}], modules=["atk_checked_rewards.py"])
    plan = resolve_rewards(cfg, config_dir=tmp_path)
    assert columns_read(plan.per_dataset["a"][0].function).required == ("prompt", "answer")
    rows = [{"prompt": PROMPT, "answer": "4", "dataset_name": "a", "source": "a:0"}]
    with pytest.raises(UserInputError, match="reads column 'prompt'.*the prompt reaches rewards as 'prompts'"):
        check_columns_read(cfg, rows, plan)


# ----------------------------------------------------------------------------------- a real run

IDS_PROBE = """
import json, os

def record_ids(completions, completion_ids, **kwargs):
    with open(os.path.join(os.path.dirname(__file__), f"ids_{os.environ.get('RANK', '0')}.jsonl"), "a") as handle:
        for completion, ids in zip(completions, completion_ids):
            handle.write(json.dumps({"text": completion[0]["content"], "ids": list(ids)}) + "\\n")
    return [0.0] * len(completions)
"""


def trl_rewards_config(tmp_path: Path, model_dir: Path, **training) -> Path:
    """think_format_reward and get_soft_overlong_punishment by path, every completion saved; the ids each completion
    had are recorded by a plain function beside the config, so TRL's own functions can score it independently.
    Generation stops at the first space (the tiny model emits one often), so completion lengths vary."""
    (tmp_path / "ids_probe.py").write_text(IDS_PROBE)
    path = tiny_config(tmp_path, model_dir, max_completion_length=12, model_stop_sequences=[" "], **training)
    edit = yaml.safe_load(path.read_text())
    edit["reward"]["score_save_threshold"] = -100
    edit["dataset_settings"]["total_rows"] = 16
    edit["datasets"][0]["reward_funcs"] = [
        {"name": "trl.rewards.think_format_reward"},
        {"name": "trl.rewards.get_soft_overlong_punishment", "max_completion_len": 8, "soft_punish_cache": 6},
        {"name": "ids_probe.record_ids"},
    ]
    path.write_text(yaml.safe_dump(edit))
    return path


def assert_scored_as_trl(tmp_path: Path, steps: int, per_step: int) -> None:
    ids_by_text: dict[str, list] = {}
    for probe in tmp_path.glob("ids_*.jsonl"):
        for line in probe.read_text().splitlines():
            record = json.loads(line)
            ids_by_text.setdefault(record["text"], []).append(record["ids"])
    examples = [json.loads(line) for line in (tmp_path / "run" / "high_scoring_examples.jsonl").read_text().splitlines()]
    assert sorted(e["step"] for e in examples) == [step for step in range(1, steps + 1) for _ in range(per_step)]
    overlong = get_soft_overlong_punishment(8, 6)
    for example in examples:
        text, scores = example["completion"], example["scores"]
        assert scores["think_format_reward"] == think_format_reward([[{"role": "assistant", "content": text}]])[0]
        assert {overlong([ids])[0] for ids in ids_by_text[text]} == {scores["get_soft_overlong_punishment"]}



def test_trl_rewards_by_path_in_a_two_step_run_score_each_saved_completion_as_trl(tmp_path, tiny_model_dir):
    outcome = run_grpo_pipeline(trl_rewards_config(tmp_path, tiny_model_dir, max_steps=2, save_steps=2))
    assert outcome.steps == 2
    assert_scored_as_trl(tmp_path, steps=2, per_step=4)


def test_trl_rewards_by_path_with_two_processes(tmp_path, tiny_model_dir):
    """Each rank imports the config folder's module and scores its share; every completion is saved once."""
    path = trl_rewards_config(tmp_path, tiny_model_dir, max_steps=2, save_steps=2)
    launched = subprocess.run([sys.executable, str(ROOT / "run_augmentoolkit.py"), "--num-processes", "2",
                               "--node", "grpo-rl-pipeline", "--config", str(path)],
                              cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=600)
    assert launched.returncode == 0, launched.stdout[-4000:]
    assert sorted(p.name for p in tmp_path.glob("ids_*.jsonl")) == ["ids_0.jsonl", "ids_1.jsonl"]
    assert_scored_as_trl(tmp_path, steps=2, per_step=2 * 4)


def test_the_nodes_own_reward_functions_file_listed_in_reward_modules_is_not_imported_twice():
    node = ROOT / "generation/core_pipelines/do_grpo_rl_with_a_prompt"
    plan = resolve_rewards(config([{"name": "mentions_keyword", "keyword": "x"}], modules=["reward_functions.py"]),
                           config_dir=node)  # the shipped config.yaml's folder
    assert [r.label for r in plan.per_dataset["a"]] == ["mentions_keyword"]
