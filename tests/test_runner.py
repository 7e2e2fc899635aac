"""run_augmentoolkit.py: super_config parsing, aliases, node lookup, flags, exit statuses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import run_augmentoolkit
from generation.nodes import resolve_alias_path

ROOT = Path(__file__).resolve().parents[1]


def run_cli(args: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run the runner in a fresh interpreter and report whether torch got imported."""
    code = (
        "import sys, runpy; sys.argv = ['run_augmentoolkit.py'] + sys.argv[1:]\n"
        "try:\n    runpy.run_path(%r, run_name='__main__')\n"
        "except SystemExit as e:\n    print('TORCH_IMPORTED=%%s' %% ('torch' in sys.modules)); raise\n"
    ) % str(ROOT / "run_augmentoolkit.py")
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_bad_config_exits_2_before_torch_and_writes_nothing(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"model": {"base_model_name": "m", "lora_rnk": 2},
                                      "datasets": [{"path": "x.jsonl"}],
                                      "training_parameters": {"output_dir": str(tmp_path / "run")}}))
    result = run_cli(["--node", "grpo-rl-pipeline", "--config", str(config)], cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "model.lora_rnk: unknown key (did you mean 'lora_rank'?)" in result.stderr
    assert "TORCH_IMPORTED=False" in result.stdout
    assert not (tmp_path / "run").exists()


def test_yaml_error_exits_2_naming_the_line(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("model:\n  base_model_name: [unclosed\n")
    result = run_cli(["--node", "grpo-rl-pipeline", "--config", str(config)], cwd=tmp_path)
    assert result.returncode == 2
    assert "c.yaml:" in result.stderr and "YAML syntax error" in result.stderr


def test_unknown_node_suggests_the_known_one(tmp_path):
    super_config = tmp_path / "super.yaml"
    super_config.write_text(yaml.safe_dump({"pipeline_order": [{"node": "grpo-rl-pipline", "config": "x.yaml"}]}))
    result = run_cli(["--super-config", str(super_config)])
    assert result.returncode == 2
    assert "did you mean 'grpo-rl-pipeline'" in result.stderr
    assert "known: grpo-rl-pipeline" in result.stderr


def test_super_config_rejects_unknown_keys(tmp_path):
    super_config = tmp_path / "super.yaml"
    super_config.write_text(yaml.safe_dump({"pipeline_order": [], "path_alias": {}}))
    assert run_augmentoolkit.main(["--super-config", str(super_config)]) == 2


def test_path_aliases_resolve_and_unknown_alias_fails(tmp_path):
    aliases = {"grpo-rl-folder": "generation/core_pipelines/do_grpo_rl_with_a_prompt"}
    assert resolve_alias_path("grpo-rl-folder:config.yaml", aliases, tmp_path) == (
        tmp_path / "generation/core_pipelines/do_grpo_rl_with_a_prompt/config.yaml"
    )
    assert resolve_alias_path("plain/path.yaml", aliases, tmp_path) == tmp_path / "plain/path.yaml"
    with pytest.raises(ValueError, match="did you mean 'grpo-rl-folder'"):
        resolve_alias_path("grpo-rl-foldr:config.yaml", aliases, tmp_path)


def test_shipped_super_config_plans_the_default_node():
    args = run_augmentoolkit.parse_args([])
    plan = run_augmentoolkit.planned_nodes(args)
    assert [(name, path.name) for name, path, _ in plan] == [("grpo-rl-pipeline", "config.yaml")]
    assert plan[0][1].is_file()


def test_dry_run_of_the_shipped_default_plans_everything_and_loads_no_model():
    # the dry run builds TRL's GRPOConfig (so TRL's own value checks run: that imports torch), but loads no
    # model; config mistakes exit before torch (test above)
    result = run_cli(["--dry-run"])
    assert result.returncode == 0, result.stderr
    assert "max_length (weight 1), generic_llm_reward (weight 0.25, async)" in result.stdout
    assert "short_answers         80" in result.stdout
    assert "TRL's GRPOConfig are valid; no model was loaded" in result.stdout
    assert "backend:" not in result.stdout
