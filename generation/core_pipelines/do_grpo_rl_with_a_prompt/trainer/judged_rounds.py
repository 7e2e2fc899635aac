"""Judged generation rounds: judge latency hidden behind training, and tied prompt groups replaced.

- reward.overlap_judging: at each generation boundary the NEXT round is generated (with the log-probs of the
  policy that generated it) and its judge calls start in the background; then the round launched one boundary
  earlier is finished (scores awaited, TRL's reward call and every collective run on the main thread) and
  trained. Training is one round off-policy; the loss's ratio is taken against the generating policy's
  log-probs, never the detached current ones. A resumed run regenerates the round that was in flight.
- reward.dynamic_sampling: tied groups are dropped and rounds of fresh prompts generated and scored until the
  batch is full or max_rounds rounds were drawn (group_filter.py chooses).
Each round's prompts come from group_filter.PromptStream (the dataloader's batch is not used); its position
goes into every checkpoint (prompt_stream.json), so a resumed run draws the same prompts.

The one module that relies on TRL's GRPOTrainer internals (the same in TRL 1.15.0 and 1.16.0; pinned by
tests/test_judge_overlap.py): `_prepare_inputs` (replaced in training, same buffering: `_step`,
`_buffered_inputs`, shuffle_sequence_dict, split_tensor_dict), `_generate_and_score_completions` (its output
keys), `_calculate_rewards(inputs, prompts, completions, completion_ids_list)`, `_get_per_token_logps_and_entropies`,
`_compute_loss` reading `old_per_token_logps` (absent: on-policy), its advantage formula and reward metrics
(redone when scores come late), and `async_loop`, `reward_weights`, `reward_func_names`, `scale_rewards`,
`multi_objective_aggregation`, `_metrics`, `_logs`, `_pending_metrics`, `_pending_extra_logs`, `_tokenizer`.
"""

from __future__ import annotations

import asyncio
import collections
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from generation.errors import UserInputError

from ..distributed import all_gather
from ..run.files import JsonlAppender
from .group_filter import (
    PromptStream, batch_rows, group_spreads, is_short, rank_rows, select_groups, selection_metrics, tied_groups,
)
from .batching import optimizer_steps_per_round
from .row_batches import concat_rows, take_rows

STREAM_STATE_FILE = "prompt_stream.json"
TRL_STD_EPS = 1e-4  # TRL's `std + 1e-4`
GENERATION_METRICS = ("completions/", "tools/")  # what TRL logs of a round as it generates it
TEXT_ONLY_KEYS = ("pixel_values", "image_grid_thw", "num_images", "image_sizes")


@dataclass
class RoundSettings:
    """What the trainer class needs beyond TRL's arguments."""

    reward: Any  # the CombinedReward (score_part / prefetched_part)
    overlap: bool = False
    max_rounds: int = 1
    min_std: Optional[float] = None  # None: dynamic sampling off
    batch_log: Optional[JsonlAppender] = None  # batches.jsonl, written here when dynamic sampling is on
    async_rewards: dict = field(default_factory=dict)  # dataset name -> how many async (judge) rewards score it


def round_settings_for(config: Any, reward: Any, batches_file: Path) -> Optional[RoundSettings]:
    """The run's RoundSettings from config.reward (None when neither feature is on)."""
    overlap, dynamic = config.reward.overlap_judging, config.reward.dynamic_sampling
    async_rewards = {name: sum(r.is_async for r in rewards) for name, rewards in reward.plan.per_dataset.items()}
    if overlap and not any(async_rewards.values()):
        print("reward.overlap_judging: every reward of this run is programmatic (no judge to wait for): "
              "training stays synchronous and on-policy")
        overlap = False
    if not overlap and dynamic is None:
        return None
    return RoundSettings(reward, overlap, dynamic.max_rounds if dynamic else 1, dynamic.min_std if dynamic else None,
                         JsonlAppender(batches_file) if dynamic else None, async_rewards)


def rounds_trainer_class(base: type, settings: Optional[RoundSettings]) -> type:
    """`base` (TRL's GRPOTrainer, or Unsloth's patched one) with judged rounds, or `base` itself when off."""
    if settings is None or (not settings.overlap and settings.min_std is None):
        return base
    return type("JudgedRoundsGRPOTrainer", (JudgedRounds, base), {"round_settings": settings})


@dataclass
class LogBuffer:
    """log_extra calls (TRL's completion table) of rewards scoring in the background, replayed on the main
    thread. (What rewards log with log_metric travels with the scored part itself: rewards/step.py.)"""

    extras: list = field(default_factory=list)

    def extra(self, column: str, values: list) -> None:
        self.extras.append((column, values))


@dataclass
class Round:
    """One generation round: its prompts, TRL's tensors, and its rewards once scored."""

    prompts: list[int]  # every rank's prompt indices
    rows: list[dict]  # this rank's rows
    start: int  # the stream position before it was drawn
    output: dict = field(default_factory=dict)
    rewards: Any = None  # (every rank's rows, reward functions), once scored
    call: tuple = ()  # TRL's reward-call arguments, kept for the late call
    scoring: Any = None  # concurrent future of this rank's scores while the judge works
    logged: LogBuffer = field(default_factory=LogBuffer)
    table: dict = field(default_factory=dict)  # completion-table entries TRL logged before the scores came
    generation_metrics: dict = field(default_factory=dict)  # TRL's completions/* and tools/* of this round


class JudgedRounds:
    """Mixin put before GRPOTrainer (see rounds_trainer_class)."""

    round_settings: RoundSettings

    # --- the training entry points
    def train(self, resume_from_checkpoint: Any = None, *args: Any, **kwargs: Any) -> Any:
        settings, world = self.round_settings, self.accelerator.num_processes
        self._world, self._rank = world, self.accelerator.process_index
        self._per_rank = self.args.generation_batch_size // world
        try:
            self._stream = PromptStream(len(self.train_dataset), self.args.generation_batch_size // self.num_generations,
                                        self.args.seed)
        except ValueError as error:
            raise UserInputError(f"reward.overlap_judging / dynamic_sampling: {error}") from None
        self._in_flight: collections.deque[Round] = collections.deque()
        self._untrained_from: Optional[int] = None
        self._launching: Optional[Round] = None
        if resume_from_checkpoint:
            self._stream.position = read_stream_position(Path(resume_from_checkpoint))
        if settings.overlap and self.args.steps_per_generation * self.num_iterations < self.args.gradient_accumulation_steps:
            print("overlap_judging: several generation rounds per optimizer step; the judge is hidden only behind "
                  "the rounds' generation, not behind the optimizer step")
        try:
            return super().train(resume_from_checkpoint, *args, **kwargs)
        finally:
            self._cancel_in_flight()

    def _cancel_in_flight(self) -> None:
        """Stop the judge calls of rounds that will not be trained in this process (their prompts come back on resume)."""
        for pending in self._in_flight:
            if pending.scoring is not None:
                pending.scoring.cancel()

    def _prepare_inputs(self, generation_batch: Any) -> Any:
        """TRL's buffering, fed by our rounds instead of `generation_batch` (the dataloader's rows) in training."""
        if not self.model.training:
            return super()._prepare_inputs(generation_batch)
        from trl.trainer.utils import shuffle_sequence_dict, split_tensor_dict

        generate_every = self.args.steps_per_generation * self.num_iterations
        if self._step % generate_every == 0 or self._buffered_inputs is None:
            batch = shuffle_sequence_dict(self._next_batch())
            self._buffered_inputs = split_tensor_dict(batch, self.args.steps_per_generation)
        return self._buffered_inputs[self._step % self.args.steps_per_generation]

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            folder = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
            position = self._stream.position if self._untrained_from is None else self._untrained_from
            (folder / STREAM_STATE_FILE).write_text(json.dumps({"position": position}), encoding="utf-8")

    # --- one training batch
    def _next_batch(self) -> dict:
        settings = self.round_settings
        try:
            if settings.overlap:
                if not self._in_flight:
                    self._in_flight.append(self._launch(defer=True))
                steps = optimizer_steps_per_round(self.args.steps_per_generation, self.num_iterations,
                                                  self.args.gradient_accumulation_steps)
                if self.state.global_step + steps < self.state.max_steps:
                    self._in_flight.append(self._launch(defer=True))  # judged while this round trains
                rounds = [self._finish(self._in_flight[0])]
            else:
                rounds = [self._launch(defer=False)]
            keep = [self._kept_groups(rounds[0])]
            while len(rounds) < settings.max_rounds and is_short(keep, len(rounds[0].prompts)):
                rounds.append(self._launch(defer=False))
                keep.append(self._kept_groups(rounds[-1]))
            batch = self._assemble(rounds, keep)
        except BaseException:
            self._cancel_in_flight()
            raise
        if settings.overlap:
            self._in_flight.popleft()
        self._untrained_from = self._in_flight[0].start if self._in_flight else None
        return batch

    def _launch(self, defer: bool) -> Round:
        """Draw a round's prompts and generate; score now, or (defer) start this rank's scoring in the background."""
        if self._untrained_from is None:
            self._untrained_from = self._stream.position
        start, prompts = self._stream.position, self._stream.draw()
        rows = [self.train_dataset[index] for index in rank_rows(prompts, self.num_generations, self._world, self._rank)]
        launched = Round(prompts, rows, start)
        self._launching = launched if defer else None
        try:
            launched.output = self._generate_and_score_completions(rows)
        finally:
            self._launching = None
        if any(key in launched.output for key in TEXT_ONLY_KEYS):
            raise RuntimeError("overlap_judging and dynamic_sampling support text prompts only")
        if defer:
            self._take_placeholder_logs(launched)
        else:
            launched.rewards = self._captured_rewards
        if self.round_settings.overlap and "old_per_token_logps" not in launched.output:
            launched.output["old_per_token_logps"] = self._generating_policy_logps(launched.output)
        return launched

    def _calculate_rewards(self, inputs: list, prompts: list, completions: list, completion_ids_list: list) -> Any:
        launching = self._launching
        if launching is None:
            self._captured_rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
            return self._captured_rewards
        import torch

        launching.call = (inputs, prompts, completions, completion_ids_list)
        columns = {key: [row[key] for row in inputs] for key in inputs[0] if key not in ("prompt", "completion", "completion_ids")}
        columns.update(completion_ids=completion_ids_list, trainer_state=self.state,
                       log_extra=launching.logged.extra)
        coroutine = self.round_settings.reward.score_part(prompts, completions, **columns)
        launching.scoring = asyncio.run_coroutine_threadsafe(coroutine, self.async_loop)
        # placeholders: TRL's advantages and reward metrics are redone by _finish once the scores are in
        return torch.zeros(len(prompts) * self._world, len(self.reward_funcs), device=self.accelerator.device)

    def _finish(self, launched: Round) -> Round:
        """Wait for a deferred round's scores; TRL's reward call then runs with them (every collective, the
        run files and the step's metrics happen here, on the main thread), and its advantages are redone."""
        import torch
        from trl.trainer.utils import nanstd

        reward, started = self.round_settings.reward, time.monotonic()
        reward.prefetched_part = launched.scoring
        try:
            launched.rewards = self._calculate_rewards(*launched.call)
        finally:
            reward.prefetched_part = None
        # the judge latency training did not hide (0 when the scores were in before this round was needed)
        self._metrics["train"]["overlap/judge_wait_seconds"].append(time.monotonic() - started)
        for column, values in launched.logged.extras:
            self._log_completion_extra(column, values)
        self._flush_reward_logs()
        rewards_per_func = launched.rewards
        advantages, rewards, std_zero = trl_advantages(rewards_per_func, self.reward_weights, self.num_generations,
                                                       self.scale_rewards, self.multi_objective_aggregation)
        count = len(launched.rows)
        launched.output["advantages"] = advantages[self._rank * count:(self._rank + 1) * count]
        metrics = self._metrics["train"]
        for i, name in enumerate(self.reward_func_names):
            metrics[f"rewards/{name}/mean"].append(torch.nanmean(rewards_per_func[:, i]).item())
            metrics[f"rewards/{name}/std"].append(nanstd(rewards_per_func[:, i]).item())
            self._logs["rewards"][name].extend(rewards_per_func[:, i].tolist())
        metrics["reward"].append(torch.nanmean(rewards).item())
        metrics["reward_std"].append(nanstd(rewards).item())
        metrics["frac_reward_zero_std"].append(std_zero.float().mean().item())
        for name, value in launched.generation_metrics.items():  # logged at the step that trains this round
            metrics[name].append(value)
        self._logs["prompt"].extend(launched.table["prompt"])
        self._logs["completion"].extend(launched.table["completion"])
        self._logs["advantages"].extend(advantages.tolist())
        return launched

    def _take_placeholder_logs(self, launched: Round) -> None:
        """Take back what TRL logged from the placeholder rewards of a deferred round (_finish logs the real ones),
        and its generation metrics (completions/*, tools/*), which belong to the step that trains it."""
        metrics, count = self._metrics["train"], len(launched.rows) * self._world
        launched.generation_metrics = {name: values.pop() for name, values in metrics.items()
                                       if name.startswith(GENERATION_METRICS) and values}
        for name in [*(f"rewards/{n}/{s}" for n in self.reward_func_names for s in ("mean", "std")),
                     "reward", "reward_std", "frac_reward_zero_std"]:
            metrics[name].pop()
        launched.table = {key: [self._logs[key].pop() for _ in range(count)][::-1] for key in ("prompt", "completion")}
        for queue in [self._logs["advantages"], *(self._logs["rewards"][n] for n in self.reward_func_names)]:
            for _ in range(count):
                queue.pop()

    def _flush_reward_logs(self) -> None:
        """TRL's flush of reward-logged extras and metrics (it runs inside its scoring, before late scores came)."""
        from accelerate.utils import gather_object
        import torch

        for column in sorted(set(gather_object(list(self._pending_extra_logs)))):
            values = self._pending_extra_logs.get(column, [None] * self._per_rank)
            self._logs["extra"][column].extend(gather_object(values))
        self._pending_extra_logs.clear()
        for name in sorted(set(gather_object(list(self._pending_metrics)))):
            values = self._pending_metrics.get(name, [])
            local = torch.tensor([sum(values), len(values)], dtype=torch.float32, device=self.accelerator.device)
            total, count = self.accelerator.gather(local).view(-1, 2).sum(dim=0).tolist()
            self._metrics["train"][name].append(total / count)
        self._pending_metrics.clear()

    def _generating_policy_logps(self, output: dict) -> Any:
        """Per-token log-probs of the completions under the current weights: the policy that just generated them."""
        import torch
        from trl.models.utils import disable_gradient_checkpointing

        ids = torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1)
        mask = torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1)
        with torch.no_grad(), disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs):
            computed = self._get_per_token_logps_and_entropies(self.model, ids, mask, output["completion_ids"].size(1),
                                                                batch_size=self.args.per_device_train_batch_size)
        return computed[0]

    # --- dynamic sampling
    def _kept_groups(self, scored: Round) -> list[bool]:
        groups = len(scored.prompts)
        if self.round_settings.min_std is None:
            return [True] * groups
        combined = weighted_rewards(scored.rewards, self.reward_weights)
        spreads = group_spreads(combined.tolist(), self.num_generations)
        return [not tied for tied in tied_groups(spreads, self.round_settings.min_std)]

    def _assemble(self, rounds: list[Round], keep: list[list[bool]]) -> dict:
        """This rank's training batch: its slice of the chosen groups' rows (padding rows carry no token into the
        loss); rows generated on another rank are sent over (one collective, only when some must move)."""
        if len(rounds) == 1 and all(keep[0]):
            batch = rounds[0].output
        else:
            import torch

            groups = select_groups(keep, len(rounds[0].prompts))
            rows, n = batch_rows(groups, self.num_generations), self._per_rank
            moving = any(row // n != position // n for position, (_, row, _) in enumerate(rows))
            owned = {(r, row): take_rows(rounds[r].output, [row % n]) for r, row, _ in rows if row // n == self._rank}
            if moving:  # every rank sends the chosen rows it generated, and keeps the ones of its slice
                owned = {key: {k: v.cpu() if torch.is_tensor(v) else v for k, v in part.items()}
                         for key, part in owned.items()}
                owned = {key: part for parts in all_gather(owned) for key, part in parts.items()}
            parts = []
            for r, row, padding in rows[self._rank * n:(self._rank + 1) * n]:
                part = dict(owned[(r, row)])
                if padding:  # a tied group fills a short batch: no token of it reaches the loss
                    part["completion_mask"] = torch.zeros_like(part["completion_mask"])
                    part["advantages"] = torch.zeros_like(part["advantages"])
                parts.append(part)
            device = self.accelerator.device
            batch = {k: v.to(device) if torch.is_tensor(v) else v
                     for k, v in concat_rows(parts, self._tokenizer.pad_token_id).items()}
            mask = batch["completion_mask"] * batch.get("tool_mask", 1)
            batch["num_items_in_batch"] = self.accelerator.gather(mask.sum()).sum()
        if self.round_settings.min_std is not None:
            self._log_selection(rounds, keep)
        return batch

    def _log_selection(self, rounds: list[Round], keep: list[list[bool]]) -> None:
        """dynamic_sampling/* metrics, and the step's line of batches.jsonl (trained and dropped prompts)."""
        settings, generations = self.round_settings, self.num_generations
        groups = select_groups(keep, len(rounds[0].prompts))
        metrics = selection_metrics(keep, groups, generations)
        dropped = [rounds[r].prompts[g] for r, kept in enumerate(keep) for g, k in enumerate(kept) if not k]
        metrics["dynamic_sampling/judged_completions_dropped"] = float(sum(
            generations * settings.async_rewards.get(self.train_dataset[index].get("dataset_name"), 0) for index in dropped))
        for name, value in metrics.items():
            self._metrics["train"][name].append(value)
        if settings.batch_log is not None and self.accelerator.is_main_process:
            source = lambda index: self.train_dataset[index].get("source", str(index))  # noqa: E731
            settings.batch_log.append({"step": self.state.global_step + 1,
                                       "sources": [source(rounds[r].prompts[g]) for r, g, padding in groups if not padding],
                                       "dropped": [source(index) for index in dropped], "rounds": len(rounds)})


def read_stream_position(checkpoint: Path) -> int:
    """Where the prompt stream stood at `checkpoint` (0 for a checkpoint written without judged rounds)."""
    try:
        return int(json.loads((checkpoint / STREAM_STATE_FILE).read_text(encoding="utf-8"))["position"])
    except (OSError, ValueError, KeyError):
        print(f"{checkpoint} has no {STREAM_STATE_FILE} (written without overlap_judging / dynamic_sampling): "
              "prompts are drawn from the start of a new order")
        return 0


def weighted_rewards(rewards_per_func: Any, weights: Any) -> Any:
    """TRL's weighted sum of each completion's rewards (None/NaN left out), NaN where every reward is NaN."""
    import torch

    summed = (rewards_per_func * weights.to(rewards_per_func.device).unsqueeze(0)).nansum(dim=1)
    summed[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan
    return summed


def trl_advantages(rewards_per_func: Any, weights: Any, generations: int, scale_rewards: str, aggregation: str
                   ) -> tuple[Any, Any, Any]:
    """TRL's advantages from gathered rewards (as _generate_and_score_completions computes them), the weighted
    reward it logs, and its zero-std flags. Returns (advantages, rewards, std_is_zero), all over every rank's rows."""
    import torch
    from trl.trainer.utils import nanstd

    rewards = weighted_rewards(rewards_per_func, weights)
    if aggregation == "normalize_then_sum":
        weights = weights.to(rewards_per_func.device).unsqueeze(0)
        grouped = rewards_per_func.view(-1, generations, rewards_per_func.size(1))
        standardised = (grouped - torch.nanmean(grouped, dim=1, keepdim=True)) / (nanstd(grouped, dim=1, keepdim=True) + TRL_STD_EPS)
        summed = (standardised.view(-1, rewards_per_func.size(1)) * weights).nansum(dim=1)
        summed[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan  # unscorable: every reward None
        std = nanstd(summed).expand_as(summed) if summed.numel() > 1 else torch.zeros_like(summed)
        advantages = (summed - torch.nanmean(summed)) / (std + TRL_STD_EPS)
    else:
        summed = rewards
        centre = torch.nanmean(summed.view(-1, generations), dim=1).repeat_interleave(generations, dim=0)
        if scale_rewards == "batch":
            std = nanstd(summed).expand_as(summed) if summed.numel() > 1 else torch.zeros_like(summed)
        else:
            std = nanstd(summed.view(-1, generations), dim=1).repeat_interleave(generations, dim=0)
        advantages = summed - centre
        if scale_rewards != "none":
            advantages = advantages / (std + TRL_STD_EPS)
    return torch.nan_to_num(advantages, nan=0.0), rewards, torch.isclose(std, torch.zeros_like(std))
