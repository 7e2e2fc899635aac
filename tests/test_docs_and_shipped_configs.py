"""What users read and run first: the README's commands and reference, and every shipped config."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cli_utils.config_reference import config_reference
from generation.core_pipelines.do_grpo_rl_with_a_prompt.config.files import load_config
from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.plan import resolve_rewards

ROOT = Path(__file__).resolve().parents[1]
NODE = ROOT / "generation" / "core_pipelines" / "do_grpo_rl_with_a_prompt"
EXAMPLES = sorted((NODE / "examples").glob("*.yaml"))
SHIPPED_CONFIGS = sorted([NODE / "config.yaml", *EXAMPLES])


def readme() -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8")


def test_ci_runs_exactly_the_readme_test_command():
    commands = re.findall(r"^(bash linux\.sh.*)$", readme(), flags=re.M)
    test_command = next(c for c in commands if "pytest" in c)
    assert test_command in (ROOT / ".ci" / "run").read_text()


def test_readme_config_reference_is_current():
    assert config_reference() in readme(), "run: python cli_utils/config_reference.py --write"


@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_validates_and_its_rewards_resolve(path, monkeypatch):
    monkeypatch.chdir(ROOT)
    config = load_config(path)
    plan = resolve_rewards(config)
    assert all(plan.per_dataset.values()), "every dataset has at least one reward"
    for dataset in config.datasets:
        assert (ROOT / dataset.path).is_file(), dataset.path


def test_shipped_configs_open_with_a_comment_saying_how_to_run_them():
    for path in SHIPPED_CONFIGS:
        head = path.read_text(encoding="utf-8").splitlines()[:8]
        assert head[0].startswith("#") and any("run_augmentoolkit.py" in line for line in head), path


# ------------------------------------------------------------------------------- examples/ (issue 18, part 5)

EXAMPLE_PLAN_LINES = {
    "gsm8k.yaml": "  rewards read: final_answer_match <- answer; gsm8k_integerresponse <- no columns",
    "ifeval.yaml": "  rewards read: ifeval_instructions <- instruction_id_list, kwargs",
    "gec.yaml": "  rewards read: gec_edit_f1 <- corrections",
}


def test_the_seed_tasks_each_have_an_example():
    assert sorted(path.name for path in EXAMPLES) == sorted(EXAMPLE_PLAN_LINES)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_each_example_opens_with_its_purpose_data_shape_and_command_which_plans_it(path):
    config = load_config(path)
    assert config.model.base_model_name == "smollm2-gguf"  # runs offline
    comment = "\n".join(line for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("#"))
    (dataset,) = config.datasets
    first_row = json.loads((ROOT / dataset.path).read_text(encoding="utf-8").splitlines()[0])
    assert dataset.path in comment and all(f'"{key}"' in comment for key in first_row), "the comment shows a row"
    command = re.search(r"Run:\s+python (run_augmentoolkit\.py --node grpo-rl-pipeline --config \S+)", comment)
    assert command, "the comment gives the command"
    result = subprocess.run([sys.executable, *command.group(1).split(), "--dry-run"], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "dry run: config, data, rewards and TRL's GRPOConfig are valid" in result.stdout
    assert EXAMPLE_PLAN_LINES[path.name] in result.stdout.splitlines()
    assert "warning" not in result.stdout and "bad rows skipped" not in result.stdout


GOOD_IFEVAL_ANSWERS = {
    1001: "Hi Sam. Could you please water my plants while I am away this weekend? Thank you so much.",
    1002: ("The river was calm and grey under a pale sky. *Golden leaves drifted slowly on the water* while ducks "
           "paddled near the bank. A low mist hung over the fields. *The air smelled of wet earth and woodsmoke* "
           "from a distant cottage, and every step crunched softly on the fallen leaves."),
    1003: "* It saves money.\n* It is healthier.\n* It is fun to share a meal you made.",
    1004: "a white tower stands\nsnow falls on the silent sea\nits light sweeps the dark",
    1005: ("Wrap the loaf in a clean cloth and keep it somewhere cool, and put the slices you will not eat soon in "
           "the freezer.\nP.S. Toast frozen slices straight from the freezer."),
    1006: ("A compass shows which way is north. Its needle lines up with the magnetic field of the Earth. "
           "Is there anything else I can help with?"),
    1007: ("<<The Lost Kite>>\nA red kite slipped from a girl's hands and flew over the hill. A farmer found it in "
           "a tree and brought it back the next day."),
    1008: ("\"Octopuses have three hearts, blue blood and no bones, so one octopus can squeeze through a hole no "
           "bigger than a coin.\""),
}


def right_answer(name: str, row: dict) -> str:
    if name == "ifeval.yaml":
        return GOOD_IFEVAL_ANSWERS[row["key"]]
    if name == "gsm8k.yaml":
        return "Working it out.\n#### " + row["answer"].rsplit("####", 1)[1].strip()
    return row["corrections"][0]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_each_examples_rewards_give_a_right_answer_full_marks(path, monkeypatch):
    """The example rows are well formed for their rewards: every instruction known, every reference readable."""
    from generation.core_pipelines.do_grpo_rl_with_a_prompt.data.sampling import sample_datasets

    monkeypatch.chdir(ROOT)
    config = load_config(path)
    rows = sample_datasets(config.datasets, config.dataset_settings, seed=0, base_dir=ROOT).train_rows
    assert len(rows) == config.dataset_settings.total_rows
    (rewards,) = resolve_rewards(config).per_dataset.values()
    columns = {key: [row[key] for row in rows] for key in rows[0] if key != "prompt"}
    completions = [right_answer(path.name, row) for row in rows]
    for reward in rewards:
        scores = reward.function([row["prompt"] for row in rows], completions, **columns)
        assert scores == [max(scores)] * len(rows) and max(scores) > 0, (reward.label, scores)


# ------------------------------------------------------------------------- set-up (issue 18, from part 1)


def pip_requirements(path: Path) -> list[str]:
    """The requirements pip reads from `path` (following -r includes, as `pip install -r` does)."""
    from pip._internal.network.session import PipSession
    from pip._internal.req.req_file import parse_requirements

    return [parsed.requirement for parsed in parse_requirements(str(path), session=PipSession())]


def test_the_seeds_node_requirements_file_installs_the_projects_requirements():
    """Augmentoolkit's set-up step: pip install -r generation/core_pipelines/do_grpo_rl_with_a_prompt/requirements.txt"""
    node = pip_requirements(NODE / "requirements.txt")
    assert node and node == pip_requirements(ROOT / "requirements.txt")


def test_deepspeed_has_an_install_path():
    from packaging.requirements import Requirement

    (deepspeed,) = pip_requirements(ROOT / "requirements-deepspeed.txt")
    assert Requirement(deepspeed).name == "deepspeed"
    script = (ROOT / "linux.sh").read_text()
    assert '[ "$deepspeed" = 1 ] && pip_install -r requirements-deepspeed.txt' in script
    result = subprocess.run(["bash", str(ROOT / "linux.sh"), "--bogus"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "--deepspeed" in result.stderr  # options are parsed before anything installs
