"""The advantages TRL trains on, computed beside it from the same rewards, and logged every step.

TRL's GRPOTrainer logs the rewards but not the advantages it derives from them. The reward function TRL
calls (combined.py) sees the rewards it returns and each completion's prompt group, so it computes the
advantages TRL will compute from them (its formula, with the run's effective scale_rewards) and logs:

  advantages/mean, advantages/std, advantages/min, advantages/max   over the batch's completions
  advantages/zero_group_share   share of prompt groups in which every advantage is 0 (nothing to learn)

With several processes these are computed over the whole step (step.py's exchange: a prompt's group can be
spread over ranks, as TRL's are), so every rank logs the same values.

What is not logged: the effective sample size of the importance weights (num_iterations > 1). TRL computes
those weights inside its loss and logs only the clipped fractions (clip_ratio/*); ESS would need a trainer
subclass, which this project does not do.

Pure Python: importing this module imports neither torch nor TRL.
"""

from __future__ import annotations

import math
from typing import Hashable, Optional, Sequence


TRL_STD_EPS = 1e-4  # TRL's `std + 1e-4` in _generate_and_score_completions
ZERO = 1e-8


def trl_advantages(
    rewards: Sequence[Optional[float]], group_ids: Sequence[Hashable], scale_rewards: str = "group",
    aggregation: str = "sum_then_normalize",
) -> list[float]:
    """The advantages TRL's GRPOTrainer computes from one reward function's `rewards` (None = NaN).

    sum_then_normalize: reward - group mean (NaN-aware), divided by the group's sample std ("group") or the
    batch's ("batch") + 1e-4, undivided with "none". normalize_then_sum (one reward function): standardised
    within each group, then over the batch. A None reward, or a group whose std is undefined, gives 0.

    >>> trl_advantages([1.0, 0.0, None, 2.0, 2.0], ["a", "a", "a", "b", "b"], "none")
    [0.5, -0.5, 0.0, 0.0, 0.0]
    """
    if scale_rewards not in ("group", "batch", "none"):
        raise ValueError(f"scale_rewards must be 'group', 'batch' or 'none', not {scale_rewards!r}")
    values = [None if r is None or math.isnan(r) else float(r) for r in rewards]
    groups: dict[Hashable, list[int]] = {}
    for index, group in enumerate(group_ids):
        groups.setdefault(group, []).append(index)
    advantages = [0.0] * len(values)
    if aggregation == "normalize_then_sum":
        standardised: list[Optional[float]] = [None] * len(values)
        for indices in groups.values():
            present = [values[i] for i in indices if values[i] is not None]
            centre, std = _mean(present), _sample_std(present)
            for i in indices:
                if values[i] is not None and std is not None:
                    standardised[i] = (values[i] - centre) / (std + TRL_STD_EPS)
        present = [v for v in standardised if v is not None]
        centre, std = _mean(present), _sample_std(present)
        return [0.0 if v is None or std is None else (v - centre) / (std + TRL_STD_EPS) for v in standardised]
    batch_std = _sample_std([v for v in values if v is not None])
    for indices in groups.values():
        present = [values[i] for i in indices if values[i] is not None]
        centre = _mean(present)
        std = _sample_std(present) if scale_rewards == "group" else batch_std
        for i in indices:
            if values[i] is None:
                continue
            advantage = values[i] - centre
            if scale_rewards != "none":
                advantage = advantage / (std + TRL_STD_EPS) if std is not None else math.nan
            advantages[i] = 0.0 if math.isnan(advantage) else advantage
    return advantages


def advantage_metrics(advantages: Sequence[float], group_ids: Sequence[Hashable]) -> dict[str, float]:
    """Mean / std / min / max of the advantages and the share of groups with nothing to learn (all 0).

    >>> advantage_metrics([1.0, -1.0, 0.0, 0.0], ["a", "a", "b", "b"])["advantages/zero_group_share"]
    0.5
    """
    if not advantages:
        return {}
    groups: dict[Hashable, list[float]] = {}
    for advantage, group in zip(advantages, group_ids):
        groups.setdefault(group, []).append(advantage)
    centre = _mean(list(advantages))
    return {
        "advantages/mean": centre,
        "advantages/std": math.sqrt(sum((a - centre) ** 2 for a in advantages) / len(advantages)),
        "advantages/min": min(advantages),
        "advantages/max": max(advantages),
        "advantages/zero_group_share": sum(all(abs(a) < ZERO for a in g) for g in groups.values()) / len(groups),
    }


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _sample_std(values: Sequence[float]) -> Optional[float]:
    """Sample std (n - 1) as TRL's nanstd; None (TRL: NaN) for fewer than two values."""
    if len(values) < 2:
        return None
    centre = _mean(values)
    return math.sqrt(sum((v - centre) ** 2 for v in values) / (len(values) - 1))
