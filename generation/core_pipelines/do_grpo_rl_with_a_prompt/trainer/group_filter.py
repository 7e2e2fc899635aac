"""Dynamic sampling's bookkeeping, without torch: where prompts come from, which groups tie, which rows train.

- `PromptStream`: the prompts of each generation round, in a seeded order of our own (one permutation of the
  train rows per epoch, the remainder of an epoch dropped as TRL's RepeatSampler does). Its position (rounds
  drawn) is all a checkpoint needs to continue in the same order.
- `rank_rows`: rank r's share of a round, as accelerate shards TRL's sampler: each prompt repeated
  num_generations times, then consecutive slices of `per_rank` rows per rank.
- `tied_groups`: a prompt group whose reward spread is at most `min_std` teaches nothing (every advantage 0).
- `select_groups`: from the rounds drawn for one training batch, the groups it trains on: untied groups in
  round order, as many as one round has; still short after the last round, tied groups fill the rest as
  padding (trained with no token in the loss). The choice is global, made from the same gathered rewards on
  every rank, so all agree without a collective, and N processes train what one process with the same
  generation batch trains; `batch_rows` lays the chosen groups' rows out, rank r taking the r-th slice
  (rows generated on another rank are sent over by judged_rounds.py).

    >>> keep = [[False, True]]            # one round of 2 groups: the first tied
    >>> select_groups(keep, needed=2)     # (round, group, padding)
    [(0, 1, False), (0, 0, True)]
    >>> batch_rows([(0, 1, False), (0, 0, True)], num_generations=2)   # (round, row of the round, padding)
    [(0, 2, False), (0, 3, False), (0, 0, True), (0, 1, True)]
"""

from __future__ import annotations

import math
import random
from typing import Optional, Sequence


class PromptStream:
    """Seeded prompt order for generation rounds; `position` counts the rounds drawn so far."""

    def __init__(self, num_prompts: int, prompts_per_draw: int, seed: int, position: int = 0):
        if prompts_per_draw < 1 or num_prompts < prompts_per_draw:
            raise ValueError(f"a generation round needs {prompts_per_draw} distinct prompts and the training data "
                             f"has {num_prompts}: add rows or lower the generation batch")
        self.num_prompts, self.prompts_per_draw, self.seed = num_prompts, prompts_per_draw, seed
        self.position = position
        self._epoch: Optional[int] = None
        self._order: list[int] = []

    @property
    def draws_per_epoch(self) -> int:
        return self.num_prompts // self.prompts_per_draw

    def draw(self) -> list[int]:
        """The next round's prompt indices (distinct), and advance."""
        epoch, index = divmod(self.position, self.draws_per_epoch)
        if epoch != self._epoch:
            self._epoch, self._order = epoch, random.Random(f"{self.seed}:{epoch}").sample(range(self.num_prompts),
                                                                                           self.num_prompts)
        self.position += 1
        return self._order[index * self.prompts_per_draw:(index + 1) * self.prompts_per_draw]


def rank_rows(prompt_indices: Sequence[int], num_generations: int, world: int, rank: int) -> list[int]:
    """Rank `rank`'s rows of a round: prompt indices, each prompt's repeated num_generations times in a row.

    >>> rank_rows([7, 9], num_generations=2, world=2, rank=1)
    [9, 9]
    """
    rows = [index for index in prompt_indices for _ in range(num_generations)]
    per_rank = len(rows) // world
    return rows[rank * per_rank:(rank + 1) * per_rank]


def group_spreads(combined: Sequence[Optional[float]], num_generations: int) -> list[Optional[float]]:
    """Sample standard deviation (n - 1, as TRL's nanstd) of each group's rewards, None values left out;
    None for a group with fewer than two rewards.

    >>> group_spreads([1.0, 1.0, 0.0, 2.0], 2)
    [0.0, 1.4142135623730951]
    >>> group_spreads([0.6666667] * 3, 3)   # no float noise on a tie
    [0.0]
    """
    spreads: list[Optional[float]] = []
    for start in range(0, len(combined), num_generations):
        values = [v for v in combined[start:start + num_generations] if v is not None and not math.isnan(v)]
        if len(values) < 2:
            spreads.append(None)
            continue
        if min(values) == max(values):  # a tie is exactly 0, whatever rounding the mean would add
            spreads.append(0.0)
            continue
        mean = sum(values) / len(values)
        spreads.append(math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)))
    return spreads


def tied_groups(spreads: Sequence[Optional[float]], min_std: float) -> list[bool]:
    """True for each group with nothing to learn: spread at most min_std, or undefined.

    >>> tied_groups([0.0, 0.5, None], 0.0)
    [True, False, True]
    """
    return [spread is None or spread <= min_std for spread in spreads]


def select_groups(keep: Sequence[Sequence[bool]], needed: int) -> list[tuple[int, int, bool]]:
    """The training batch's groups, (round, group, padding): the first `needed` untied ones, in round order;
    if fewer, tied groups of the latest rounds fill the rest (padding)."""
    chosen = [(r, g, False) for r, kept in enumerate(keep) for g, k in enumerate(kept) if k][:needed]
    tied = [(r, g, True) for r in reversed(range(len(keep))) for g, k in enumerate(keep[r]) if not k]
    return chosen + tied[:needed - len(chosen)]


def is_short(keep: Sequence[Sequence[bool]], needed: int) -> bool:
    """Whether the rounds so far hold fewer than `needed` untied groups (another round would help)."""
    return sum(k for kept in keep for k in kept) < needed


def batch_rows(groups: Sequence[tuple[int, int, bool]], num_generations: int) -> list[tuple[int, int, bool]]:
    """Every row of the chosen groups, (round, row of that round, padding), in batch order."""
    return [(r, g * num_generations + i, padding) for r, g, padding in groups for i in range(num_generations)]


def selection_metrics(keep: Sequence[Sequence[bool]], groups: Sequence[tuple[int, int, bool]],
                      num_generations: int) -> dict[str, float]:
    """dynamic_sampling/* for one training batch (the same on every rank)."""
    generated = sum(len(kept) for kept in keep)
    dropped = sum(not k for kept in keep for k in kept)
    padding = sum(p for _, _, p in groups)
    return {
        "dynamic_sampling/rounds": float(len(keep)),
        "dynamic_sampling/groups_generated": float(generated),
        "dynamic_sampling/groups_dropped": float(dropped),
        "dynamic_sampling/groups_trained": float(len(groups) - padding),
        "dynamic_sampling/groups_unused": float(generated - dropped - (len(groups) - padding)),
        "dynamic_sampling/padding_rows": float(padding * num_generations),
        "dynamic_sampling/tied_share_trained": padding / len(groups) if groups else 0.0,
    }
