"""What users read and run first: the README's commands and reference, and every shipped config."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cli_utils.config_reference import config_reference
from generation.core_pipelines.do_grpo_rl_with_a_prompt.config.files import load_config
from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.plan import resolve_rewards

ROOT = Path(__file__).resolve().parents[1]
NODE = ROOT / "generation" / "core_pipelines" / "do_grpo_rl_with_a_prompt"
SHIPPED_CONFIGS = sorted([NODE / "config.yaml", *(NODE / "example_configs").glob("*.yaml")])


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
