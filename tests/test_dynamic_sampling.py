"""Dynamic sampling (reward.dynamic_sampling): prompt groups whose rewards tie never reach the loss, are counted,
and a run killed with -9 and rerun trains on the same rows, step by step, as an uninterrupted one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from generation.core_pipelines.do_grpo_rl_with_a_prompt.trainer.group_filter import (
    PromptStream, batch_rows, is_short, rank_rows, select_groups, selection_metrics,
)
from generation.core_pipelines.do_grpo_rl_with_a_prompt.pipeline import run_grpo_pipeline
import round_rewards  # noqa: F401  (registers the tie rewards for in-process runs)
from test_lifecycle import kill_9_then_rerun

ROOT = Path(__file__).resolve().parents[1]
GENERATIONS = 4
BATCH = 8  # per device: 2 prompt groups per step


def tie_data(path: Path, rows: int = 24, tie_every: int = 3) -> Path:
    """Rows whose prompt holds TIE (every `tie_every`-th) get the same reward for every completion."""
    with path.open("w") as handle:
        for i in range(rows):
            text = f"the cat {i} sat on a mat?" + (" TIE" if i % tie_every == 0 else "")
            handle.write(json.dumps({"conversations": [{"from": "human", "value": text}, {"from": "gpt", "value": "yes"}]}) + "\n")
    return path


def tie_config(tmp_path: Path, model_dir: Path, reward: dict, reward_settings: dict, tie_every: int = 3,
               name: str = "run", **training) -> Path:
    config = {
        "training_parameters": {"output_dir": str(tmp_path / name), "max_steps": 4, "per_device_train_batch_size": BATCH,
                                "num_generations": GENERATIONS, "max_completion_length": 8, "learning_rate": 1e-3,
                                "save_steps": 2, **training},
        "model": {"base_model_name": str(model_dir), "lora_rank": 4, "lora_alpha": 8},
        "reward": reward_settings,
        "datasets": [{"path": str(tie_data(tmp_path / "data.jsonl", tie_every=tie_every)), "reward_funcs": [reward]}],
        "dataset_settings": {"total_rows": 24},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def line_of(source: str) -> int:
    return int(source.rsplit(":", 1)[1]) - 1  # the data row's index


@pytest.fixture
def loss_inputs(monkeypatch):
    """Every row TRL's loss sees: (step, prompt text, tokens in the loss, advantage)."""
    from trl import GRPOTrainer

    seen: list[tuple[int, str, int, float]] = []
    original = GRPOTrainer._compute_loss

    def recording(self, model, inputs):
        for ids, mask, completion_mask, advantage in zip(inputs["prompt_ids"], inputs["prompt_mask"],
                                                         inputs["completion_mask"], inputs["advantages"]):
            text = self.processing_class.decode(ids[mask.bool()])
            seen.append((self.state.global_step + 1, text, int(completion_mask.sum()), float(advantage)))
        return original(self, model, inputs)

    monkeypatch.setattr(GRPOTrainer, "_compute_loss", recording)
    return seen


def test_tied_groups_never_reach_the_loss_and_are_counted(tmp_path, tiny_model_dir, loss_inputs):
    config = tie_config(tmp_path, tiny_model_dir, {"name": "test_sync_ties_on_marked_prompts"}, {"dynamic_sampling": True})
    assert run_grpo_pipeline(config).finished
    run = tmp_path / "run"
    batches = jsonl(run / "batches.jsonl")
    assert [b["step"] for b in batches] == [1, 2, 3, 4]
    data = [json.loads(line)["conversations"][0]["value"] for line in (tmp_path / "data.jsonl").read_text().splitlines()]
    dropped = [line_of(s) for b in batches for s in b["dropped"]]
    assert dropped and all("TIE" in data[i] for i in dropped)  # only tied groups are dropped, and some were
    for batch in batches:
        assert len(batch["sources"]) == BATCH // GENERATIONS  # every step full
        assert not any("TIE" in data[line_of(s)] for s in batch["sources"])
    # the loss saw every trained row, and no row of a tied prompt
    assert len(loss_inputs) == 4 * BATCH
    assert not [row for row in loss_inputs if "TIE" in row[1]]
    steps = [m for m in jsonl(run / "metrics.jsonl") if "dynamic_sampling/rounds" in m]
    assert [m["step"] for m in steps] == [1, 2, 3, 4]
    assert sum(m["dynamic_sampling/groups_dropped"] for m in steps) == len(dropped)
    assert [m["dynamic_sampling/rounds"] for m in steps] == [b["rounds"] for b in batches]
    assert all(m["dynamic_sampling/groups_trained"] == BATCH // GENERATIONS and m["dynamic_sampling/padding_rows"] == 0
               for m in steps)
    assert all(m["dynamic_sampling/judged_completions_dropped"] == 0 for m in steps)  # a programmatic reward


def test_a_batch_still_short_after_max_rounds_gives_its_tied_rows_no_token_in_the_loss(tmp_path, tiny_model_dir,
                                                                                         loss_inputs):
    config = tie_config(tmp_path, tiny_model_dir, {"name": "test_ties_on_marked_prompts"},
                        {"dynamic_sampling": {"max_rounds": 1}}, tie_every=2, max_steps=3)
    assert run_grpo_pipeline(config).finished
    steps = [m for m in jsonl(tmp_path / "run" / "metrics.jsonl") if "dynamic_sampling/rounds" in m]
    padding = sum(m["dynamic_sampling/padding_rows"] for m in steps)
    tied_rows = [row for row in loss_inputs if "TIE" in row[1]]
    assert padding > 0 and len(tied_rows) == padding
    assert all(tokens == 0 and advantage == 0.0 for _, _, tokens, advantage in tied_rows)
    assert all(tokens > 0 for _, text, tokens, _ in loss_inputs if "TIE" not in text)
    # an async reward counts as a judge: its completions in dropped groups are the judge calls spent on nothing
    assert sum(m["dynamic_sampling/judged_completions_dropped"] for m in steps) == sum(
        m["dynamic_sampling/groups_dropped"] for m in steps) * GENERATIONS


def test_kill_9_then_rerun_trains_on_the_same_rows_as_an_uninterrupted_run(tmp_path, tiny_model_dir):
    def config_for(name: str, seconds: float) -> Path:  # a sleeping reward, so that the kill lands mid-run
        path = tie_config(tmp_path, tiny_model_dir, {"name": "test_sync_ties_on_marked_prompts"},
                          {"dynamic_sampling": True}, name=name, max_steps=6, save_steps=1)
        data = yaml.safe_load(path.read_text())
        data["datasets"][0]["reward_funcs"].append({"name": "test_slow_brevity", "seconds": seconds, "weight": 0.0})
        path.write_text(yaml.safe_dump(data))
        return path

    assert run_grpo_pipeline(config_for("uninterrupted", seconds=0)).finished
    kill_9_then_rerun(config_for("killed", seconds=1.0), tmp_path / "killed")

    def order(run: str) -> list[tuple]:
        return [(b["step"], [Path(s).name for s in b["sources"]], [Path(s).name for s in b["dropped"]], b["rounds"])
                for b in jsonl(tmp_path / run / "batches.jsonl")]

    assert [step for step, *_ in order("killed")] == [1, 2, 3, 4, 5, 6]
    assert order("killed") == order("uninterrupted")


# --- the bookkeeping, against TRL's own sampler and accelerate's sharding


@pytest.mark.parametrize("world,per_rank", [(1, 8), (2, 4), (2, 6), (3, 4)])
def test_rank_rows_are_where_trl_and_accelerate_put_them(world, per_rank):
    from accelerate.data_loader import BatchSamplerShard
    from torch.utils.data import BatchSampler
    from trl.trainer.utils import RepeatSampler

    generation_batch = world * per_rank
    prompts = generation_batch // 2
    sampler = RepeatSampler(list(range(40)), mini_repeat_count=2, batch_size=prompts, repeat_count=1, shuffle=False)
    for rank in range(world):
        shard = BatchSamplerShard(BatchSampler(sampler, batch_size=per_rank, drop_last=False), world, rank)
        assert next(iter(shard)) == rank_rows(list(range(prompts)), 2, world, rank)


def test_the_prompt_stream_is_seeded_distinct_per_round_and_resumable():
    stream = PromptStream(num_prompts=10, prompts_per_draw=3, seed=7)
    draws = [stream.draw() for _ in range(7)]
    assert all(len(set(d)) == 3 for d in draws)
    assert len(set(sum(draws[:3], []))) == 9  # an epoch (3 draws of 3 out of 10) repeats no prompt
    assert draws[3:6] != draws[:3]  # the next epoch has its own order
    resumed = PromptStream(10, 3, seed=7, position=4)
    assert [resumed.draw() for _ in range(3)] == draws[4:7]
    assert PromptStream(10, 3, seed=8).draw() != draws[0]
    with pytest.raises(ValueError, match="distinct prompts"):
        PromptStream(num_prompts=2, prompts_per_draw=3, seed=0)


def test_the_batch_takes_the_first_untied_groups_of_every_round_and_pads_only_when_short():
    keep = [[True, False, True], [False, True, True]]
    assert not is_short(keep, needed=3) and is_short(keep[:1], needed=3)
    assert select_groups(keep, needed=3) == [(0, 0, False), (0, 2, False), (1, 1, False)]
    short = select_groups([[False, True, False], [False, False, False]], needed=3)
    assert short == [(0, 1, False), (1, 0, True), (1, 1, True)]  # the latest round's tied groups pad
    # 2 ranks of 6 rows, groups of 4: rank 0 trains rows 0-5 of the layout, rank 1 rows 6-11
    layout = batch_rows(short, num_generations=4)
    assert layout[:6] == [(0, 4, False), (0, 5, False), (0, 6, False), (0, 7, False), (1, 0, True), (1, 1, True)]
    metrics = selection_metrics([[False, True, False], [False, False, False]], short, 4)
    assert metrics["dynamic_sampling/padding_rows"] == 8 and metrics["dynamic_sampling/groups_dropped"] == 5
    assert metrics["dynamic_sampling/groups_trained"] == 1 and metrics["dynamic_sampling/tied_share_trained"] == 2 / 3


def test_rows_of_batches_padded_apart_are_put_together_with_trls_padding_sides():
    import torch

    from generation.core_pipelines.do_grpo_rl_with_a_prompt.trainer.row_batches import concat_rows, take_rows

    short = {"prompt_ids": torch.tensor([[5, 6]]), "prompt_mask": torch.tensor([[1, 1]]),
             "completion_ids": torch.tensor([[7]]), "completion_mask": torch.tensor([[1]]),
             "old_per_token_logps": torch.tensor([[-0.5]]), "advantages": torch.tensor([1.0]), "num_items_in_batch": 1}
    wide = {"prompt_ids": torch.tensor([[0, 8, 9], [1, 2, 3]]), "prompt_mask": torch.tensor([[0, 1, 1], [1, 1, 1]]),
            "completion_ids": torch.tensor([[4, 4], [3, 0]]), "completion_mask": torch.tensor([[1, 1], [1, 0]]),
            "old_per_token_logps": torch.tensor([[-1.0, -2.0], [-3.0, 0.0]]), "advantages": torch.tensor([2.0, 3.0]),
            "num_items_in_batch": 3}
    batch = concat_rows([short, take_rows(wide, [1])], pad_token_id=0)
    assert batch["prompt_ids"].tolist() == [[0, 5, 6], [1, 2, 3]] and batch["prompt_mask"].tolist() == [[0, 1, 1], [1, 1, 1]]
    assert batch["completion_ids"].tolist() == [[7, 0], [3, 0]] and batch["completion_mask"].tolist() == [[1, 0], [1, 0]]
    assert batch["old_per_token_logps"].tolist() == [[-0.5, 0.0], [-3.0, 0.0]] and batch["advantages"].tolist() == [1.0, 3.0]
    assert "num_items_in_batch" not in batch  # the caller counts the loss tokens of the new batch


def test_group_filter_examples_hold_and_it_imports_no_torch():
    import doctest

    from generation.core_pipelines.do_grpo_rl_with_a_prompt.trainer import group_filter

    assert doctest.testmod(group_filter).failed == 0
    code = f"import sys; import {group_filter.__name__}; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True).stdout.strip() == "False"


def test_round_arithmetic_examples_hold():
    import doctest

    from generation.core_pipelines.do_grpo_rl_with_a_prompt.trainer import batching

    assert doctest.testmod(batching).attempted and doctest.testmod(batching).failed == 0


def test_the_settings_validate_and_changing_them_on_resume_is_refused(tmp_path):
    from generation.core_pipelines.do_grpo_rl_with_a_prompt.config.schema import GRPOPipelineConfig
    from generation.core_pipelines.do_grpo_rl_with_a_prompt.run.resume import check_resume_is_safe
    from generation.core_pipelines.do_grpo_rl_with_a_prompt.run.files import RunPaths
    from generation.errors import UserInputError

    def config(**reward) -> GRPOPipelineConfig:
        return GRPOPipelineConfig(model={"base_model_name": "m"}, datasets=[{"path": "d.jsonl"}], reward=reward)

    assert config(dynamic_sampling=True).reward.dynamic_sampling.max_rounds == 4
    assert config(dynamic_sampling=False).reward.dynamic_sampling is None
    with pytest.raises(ValueError, match="max_rounds"):
        config(dynamic_sampling={"max_rounds": 0})
    with pytest.raises(ValueError, match="min_sdt"):
        config(dynamic_sampling={"min_sdt": 0.1})

    def snapshot(**reward) -> dict:
        return config(**reward).model_dump(mode="json", exclude_none=True)

    check_resume_is_safe(snapshot(), snapshot(score_save_threshold=0.5), RunPaths(tmp_path))
    for before, after in [({}, {"dynamic_sampling": True}), ({}, {"overlap_judging": True}),
                          ({"dynamic_sampling": True}, {"dynamic_sampling": {"max_rounds": 2}})]:
        with pytest.raises(UserInputError, match="reward.(dynamic_sampling|overlap_judging)"):
            check_resume_is_safe(snapshot(**before), snapshot(**after), RunPaths(tmp_path))
