"""Judge latency hidden behind training (reward.overlap_judging): the loss's ratio is taken against the log-probs
of the policy that generated the batch; the next round's judge calls are in flight while this round trains (one
round ahead, no more); a judge that gives up stops the run with a checkpoint and a rerun continues in the same
order, as does a rerun after kill -9; the TRL internals trainer/judged_rounds.py relies on are pinned here."""

from __future__ import annotations

import inspect
import json
import re
import threading
import time
from pathlib import Path

import pytest
import yaml

from generation.core_pipelines.do_grpo_rl_with_a_prompt.trainer.judged_rounds import JudgedRounds, trl_advantages
from generation.core_pipelines.do_grpo_rl_with_a_prompt.pipeline import run_grpo_pipeline
from judge_server import JudgeServer, Reply, last_user_text, scores_reply
from test_dynamic_sampling import jsonl, tie_config
from test_lifecycle import kill_9_then_rerun

QUESTION = re.compile(r"the cat (\d+) sat")


def judge_reward(tmp_path: Path, base_url: str, cache: str, **settings) -> dict:
    """generic_llm_reward against the loopback judge (quality 1-10), its cache in `cache`."""
    prompt = tmp_path / "judge_prompt.yaml"
    prompt.write_text(yaml.safe_dump([
        {"role": "system", "content": "You grade answers."},
        {"role": "user", "content": "Question: {input_text}\nAnswer:\n{output_text}\nGrade as <quality>N</quality>."},
    ]))
    return {"name": "generic_llm_reward", "system_prompt_path": str(prompt), "eval_llm_name": "loopback-judge",
            "eval_llm_base_url": base_url, "eval_llm_api_key": "sk-loopback", "cache_path": str(tmp_path / cache),
            "timeout": 20, "score_types": [{"name": "quality", "type": "score", "min": 1, "max": 10}], **settings}


class Judge:
    """A loopback judge that records when each question's calls arrive, and fails on chosen questions."""

    def __init__(self, latency: float = 0.0):
        self.arrivals: list[tuple[float, int]] = []
        self.failing: set[int] = set()
        self._lock = threading.Lock()
        self.server = JudgeServer(self.respond, latency=latency)

    def respond(self, body: dict, index: int) -> Reply:
        text = last_user_text(body)
        question = int(QUESTION.search(text).group(1))
        with self._lock:
            self.arrivals.append((time.time(), question))
        if question in self.failing:
            return Reply(status=500, error_message="judge down")
        return scores_reply(quality=5 if "TIE" in text else 1 + len(text) % 10)

    def __enter__(self) -> "Judge":
        self.server.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.stop()


def questions(sources: list[str]) -> set[int]:
    return {int(s.rsplit(":", 1)[1]) - 1 for s in sources}


def test_the_loss_ratio_uses_the_generating_policys_log_probs(tmp_path, tiny_model_dir, monkeypatch):
    import torch
    from trl import GRPOTrainer

    generated: dict[tuple, tuple[dict, int]] = {}  # row -> (weights that generated it, global step then)

    def row_key(batch: dict, i: int) -> tuple:
        prompt = batch["prompt_ids"][i][batch["prompt_mask"][i].bool()].tolist()
        return tuple(prompt), tuple(batch["completion_ids"][i][batch["completion_mask"][i].bool()].tolist())

    def trainable(model) -> dict:
        return {name: p for name, p in model.named_parameters() if p.requires_grad}

    original_launch, original_loss = JudgedRounds._launch, GRPOTrainer._compute_loss

    def launch(self, defer):
        weights = {name: p.detach().clone() for name, p in trainable(self.model).items()}
        launched = original_launch(self, defer)
        for i in range(launched.output["completion_ids"].size(0)):
            generated[row_key(launched.output, i)] = (weights, self.state.global_step)
        return launched

    checked: list[tuple[int, int, float, float]] = []  # (step, generated at, |old - generating|, |old - current|)

    def checking_loss(self, model, inputs):
        old = inputs.get("old_per_token_logps")
        assert old is not None, "the batch carries no old log-probs: the ratio would be computed on-policy"
        ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
        mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
        tokens, width = inputs["completion_mask"].bool(), inputs["completion_ids"].size(1)
        params = trainable(self.model)
        current = {name: p.detach().clone() for name, p in params.items()}
        with torch.no_grad():
            now = self._get_per_token_logps_and_entropies(model, ids, mask, width)[0]
            for i in range(ids.size(0)):
                weights, step = generated[row_key(inputs, i)]
                for name, p in params.items():
                    p.copy_(weights[name])
                then = self._get_per_token_logps_and_entropies(model, ids[i:i + 1], mask[i:i + 1], width)[0][0]
                for name, p in params.items():
                    p.copy_(current[name])
                checked.append((self.state.global_step + 1, step, float((old[i] - then)[tokens[i]].abs().max()),
                                float((old[i] - now[i])[tokens[i]].abs().max())))
        return original_loss(self, model, inputs)

    monkeypatch.setattr(JudgedRounds, "_launch", launch)
    monkeypatch.setattr(GRPOTrainer, "_compute_loss", checking_loss)
    config = tie_config(tmp_path, tiny_model_dir, {"name": "test_ties_on_marked_prompts", "latency": 0.2},
                        {"overlap_judging": True}, learning_rate=0.05, max_steps=3)
    assert run_grpo_pipeline(config).finished
    assert sorted({step for step, *_ in checked}) == [1, 2, 3]
    assert all(gap_generating < 1e-4 for *_, gap_generating, _ in checked)  # old = the generating policy's
    for step, generated_at, _, gap_current in checked:
        if step == 1:  # the first round is generated and trained before any update
            assert generated_at == 0
        else:  # later rounds were generated one update earlier: the current policy differs, and the loss knows
            assert generated_at == step - 2
    assert max(gap for step, _, _, gap in checked if step > 1) > 1e-3


LENGTH_PROBE = """
def completion_lengths(completion_ids, log_metric, **kwargs):
    \"\"\"Logs the mean token length of the completions it scores: those of the step that trains them.\"\"\"
    log_metric("probe/mean_length", sum(len(ids) for ids in completion_ids) / len(completion_ids))
    return [0.0] * len(completion_ids)
"""


@pytest.mark.parametrize("overlap", [True, False])
def test_the_next_rounds_judge_calls_are_in_flight_while_this_round_trains(tmp_path, tiny_model_dir, overlap):
    (tmp_path / "length_probe.py").write_text(LENGTH_PROBE)
    with Judge(latency=1.0) as judge:
        config = tie_config(tmp_path, tiny_model_dir, judge_reward(tmp_path, judge.server.base_url, "cache.sqlite"),
                            {"overlap_judging": overlap}, max_steps=4, max_completion_length=12,
                            model_stop_sequences=[" "])  # lengths vary
        settings = yaml.safe_load(config.read_text())
        settings["datasets"][0]["reward_funcs"].append({"name": "length_probe.completion_lengths", "weight": 0})
        config.write_text(yaml.safe_dump(settings))
        assert run_grpo_pipeline(config).finished
    run = tmp_path / "run"
    ended = {m["step"]: m["wall_time"] for m in jsonl(run / "metrics.jsonl") if "loss" in m}
    trained = {b["step"]: questions(b["sources"]) for b in jsonl(run / "batches.jsonl")}
    assert sorted(trained) == [1, 2, 3, 4]
    for step in (2, 3, 4):
        asked = [t for t, question in judge.arrivals if question in trained[step]]
        assert asked
        if overlap:  # judged during the previous step, and not earlier than one step ahead
            assert max(asked) < ended[step - 1]
            assert step == 2 or min(asked) > ended[step - 2]
        else:
            assert min(asked) > ended[step - 1]
    waits = [m.get("overlap/judge_wait_seconds") for m in jsonl(run / "metrics.jsonl") if "loss" in m]
    assert all(w is not None and w >= 0 for w in waits) if overlap else not any(waits)
    # TRL's generation metrics are those of the completions each step trains, not of the round generated ahead
    steps = [m for m in jsonl(run / "metrics.jsonl") if "loss" in m]
    assert [m.get("completions/mean_length") for m in steps] == pytest.approx([m["probe/mean_length"] for m in steps])


@pytest.fixture(scope="module")
def healthy_run(tmp_path_factory, tiny_model_dir) -> tuple[Path, Judge]:
    """An overlapped 6-step run with a judge that always answers (latency 0.5 s), checkpoints every step."""
    tmp_path = tmp_path_factory.mktemp("overlap_uninterrupted")
    judge = Judge(latency=0.5).__enter__()
    config = overlap_run_config(tmp_path, tiny_model_dir, judge, "uninterrupted")
    assert run_grpo_pipeline(config).finished
    yield tmp_path / "uninterrupted", judge
    judge.__exit__()


def overlap_run_config(tmp_path: Path, model_dir: Path, judge: Judge, name: str) -> Path:
    reward = judge_reward(tmp_path, judge.server.base_url, f"{name}.sqlite", max_retries=0, max_failure_share=0.5,
                          max_failed_steps=1)
    return tie_config(tmp_path, model_dir, reward, {"overlap_judging": True}, name=name, max_steps=6, save_steps=1)


def order(run: Path) -> list[tuple[int, list[str]]]:
    return [(b["step"], sorted(Path(s).name for s in b["sources"])) for b in jsonl(run / "batches.jsonl")]


def test_a_judge_that_gives_up_stops_the_run_and_a_rerun_continues_in_the_same_order(tmp_path, tiny_model_dir,
                                                                                     healthy_run, capsys):
    uninterrupted, judge = healthy_run
    step_3 = questions(jsonl(uninterrupted / "batches.jsonl")[2]["sources"])
    config = overlap_run_config(tmp_path, tiny_model_dir, judge, "run")
    judge.failing = step_3
    try:
        outcome = run_grpo_pipeline(config)
    finally:
        judge.failing = set()
    assert not outcome.finished and outcome.steps == 2
    assert "run stopped early" in capsys.readouterr().out
    run = tmp_path / "run"
    assert sorted(p.name for p in (run / "checkpoints").glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    assert json.loads((run / "checkpoints" / "checkpoint-2" / "prompt_stream.json").read_text()) == {"position": 2}
    assert run_grpo_pipeline(config).finished  # the judge is back: resume, regenerating round 3
    assert order(run) == order(uninterrupted)


def test_kill_9_of_an_overlapped_run_then_rerun_trains_in_the_same_order(tmp_path, tiny_model_dir, healthy_run):
    uninterrupted, judge = healthy_run
    kill_9_then_rerun(overlap_run_config(tmp_path, tiny_model_dir, judge, "run"), tmp_path / "run")
    assert order(tmp_path / "run") == order(uninterrupted)


# --- TRL internals (the same in TRL 1.15.0, which the GPU extra pins, and 1.16.0)


def test_the_trl_internals_judged_rounds_relies_on_are_there():
    from trl import GRPOTrainer
    from trl.models.utils import disable_gradient_checkpointing  # noqa: F401
    from trl.trainer.utils import nanstd, shuffle_sequence_dict, split_tensor_dict  # noqa: F401

    def source(name: str) -> str:
        return inspect.getsource(getattr(GRPOTrainer, name))

    assert list(inspect.signature(GRPOTrainer._calculate_rewards).parameters) == [
        "self", "inputs", "prompts", "completions", "completion_ids_list"]
    assert list(inspect.signature(GRPOTrainer._get_per_token_logps_and_entropies).parameters)[:6] == [
        "self", "model", "input_ids", "attention_mask", "logits_to_keep", "batch_size"]
    prepare = source("_prepare_inputs")
    for needle in ("generate_every = self.args.steps_per_generation * self.num_iterations",
                   "self._step % generate_every == 0 or self._buffered_inputs is None",
                   "shuffle_sequence_dict(generation_batch)", "split_tensor_dict(generation_batch, self.args.steps_per_generation)",
                   "self._buffered_inputs[self._step % self.args.steps_per_generation]"):
        assert needle in prepare, needle
    score = source("_generate_and_score_completions")
    for needle in ("self._calculate_rewards(inputs, prompts, completions, completion_ids_list)",
                   "self.args.gradient_accumulation_steps % generate_every != 0", 'output["old_per_token_logps"] = old_per_token_logps',
                   "advantages = advantages / (std_rewards + 1e-4)", 'self._metrics[mode]["frac_reward_zero_std"]',
                   'self._logs["advantages"].extend(all_process_advantages.tolist())',
                   "for name in sorted(set(gather_object(list(self._pending_metrics)))):",
                   "for column in sorted(set(gather_object(list(self._pending_extra_logs)))):"):
        assert needle in score, needle
    loss = source("_compute_loss")
    assert "old_per_token_logps = per_token_logps.detach() if old_per_token_logps is None else old_per_token_logps" in loss
    assert "log_ratio = per_token_logps - old_per_token_logps" in loss


def test_advantages_redone_from_late_scores_equal_trls_own(tmp_path, tiny_model_dir):
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    def length_tied_on_q1(prompts, completions, **_):
        return [0.5 if prompt == "q 1" else float(len(text)) for prompt, text in zip(prompts, completions)]

    def first_letter(prompts, completions, **_):
        return [float(ord(text[0])) if text and i % 3 else None for i, text in enumerate(completions)]

    args = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=8, num_generations=4, max_completion_length=6,
                      use_cpu=True, report_to="none", reward_weights=[1.0, 0.5])
    trainer = GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model_dir), args=args,
                          reward_funcs=[length_tied_on_q1, first_letter], processing_class=AutoTokenizer.from_pretrained(tiny_model_dir),
                          train_dataset=Dataset.from_list([{"prompt": f"q {i}"} for i in range(4)]))
    assert {"prompt", "completion", "rewards", "advantages", "extra"} <= set(trainer._logs)
    captured = []
    calculate = trainer._calculate_rewards
    trainer._calculate_rewards = lambda *arguments: captured.append(calculate(*arguments)) or captured[-1]
    trainer.model.train()
    rows = [trainer.train_dataset[i] for i in (0, 0, 0, 0, 1, 1, 1, 1)]
    for scale, aggregation in [("group", "sum_then_normalize"), ("batch", "sum_then_normalize"),
                               ("none", "sum_then_normalize"), ("group", "normalize_then_sum")]:
        trainer.scale_rewards, trainer.multi_objective_aggregation = scale, aggregation
        output = trainer._generate_and_score_completions(rows)
        advantages, rewards, std_zero = trl_advantages(captured[-1], trainer.reward_weights, 4, scale, aggregation)
        assert torch.allclose(output["advantages"], advantages, atol=1e-6), (scale, aggregation)
        metrics = trainer._metrics["train"]
        assert metrics["reward"][-1] == pytest.approx(torch.nanmean(rewards).item())
        assert metrics["frac_reward_zero_std"][-1] == pytest.approx(std_zero.float().mean().item())


def test_two_processes_agree_on_every_round_and_train_what_one_process_trains(tmp_path, tiny_model_dir):
    """Overlap and dynamic sampling over 2 processes whose prompt groups straddle the ranks (6 rows per rank,
    groups of 4): the same prompts trained and dropped, step by step, as one process with the whole batch."""
    from test_distributed import finish, launch, torchrun

    with Judge(latency=0.3) as judge:
        def config_for(name: str, batch: int) -> Path:
            reward = judge_reward(tmp_path, judge.server.base_url, f"{name}.sqlite")
            return tie_config(tmp_path, tiny_model_dir, reward, {"overlap_judging": True, "dynamic_sampling": True},
                              name=name, per_device_train_batch_size=batch)

        assert run_grpo_pipeline(config_for("one", 12)).finished
        finish(launch(torchrun(config_for("two", 6))))

    def steps(name: str) -> list[tuple]:
        return [(b["step"], [Path(s).name for s in b["sources"]], [Path(s).name for s in b["dropped"]], b["rounds"])
                for b in jsonl(tmp_path / name / "batches.jsonl")]

    assert [step for step, *_ in steps("two")] == [1, 2, 3, 4]
    assert steps("two") == steps("one")
    assert any(dropped for _, _, dropped, _ in steps("two"))
    logged = [m for m in jsonl(tmp_path / "two" / "metrics.jsonl") if "dynamic_sampling/rounds" in m]
    assert [m["step"] for m in logged] == [1, 2, 3, 4]
    assert all(m["dynamic_sampling/groups_trained"] == 3 and m["dynamic_sampling/padding_rows"] == 0 for m in logged)
