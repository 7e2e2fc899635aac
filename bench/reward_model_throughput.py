"""Reward-model scoring throughput on CPU: the reward_model reward vs TRL's formula written out by hand.

    python bench/reward_model_throughput.py                    # about a minute on a busy 2-core machine
    python bench/reward_model_throughput.py --hidden 256 --count 512 --batch-size 32
    python bench/reward_model_throughput.py --threads 0        # torch's default thread count

A tiny random LlamaForSequenceClassification (2 layers, hidden 64 unless --hidden; built on the spot, no
download) scores GRPO-shaped batches of 64 completions (8 prompts x 8 generations; a system + user prompt
and completions of 20 to 60 words, seeded). Ours: reward_model(model, batch_size) called once per batch,
after one warm-up call that loads the weights (its time is printed apart). Baseline: what TRL's
_calculate_rewards does for a model reward, by hand: apply_chat_template on every prompt + completion, one
tokenizer call over the whole batch, one forward, logits[:, 0]. Printed: completions/s for each (wall clock,
median of --repeat runs), ours / baseline, and the largest score difference (must be ~0). On a loaded
machine torch's intra-op threads wait on each other (a 64-wide matmul: 0.7 ms on 1 thread, 46 ms on 2 with
load 7 on 2 cores): so one thread by default, which measures the model rather than the contention.
Goal: ours >= 0.8 x baseline (batching by batch_size pads less but runs more forwards).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

GROUP, PROMPTS_PER_BATCH = 8, 8
WORDS = "the cat dog sat on a mat answer is yes no one two three four five six seven eight nine ten".split()


def batches(count: int, rng: random.Random) -> list[tuple[list, list[str]]]:
    """count completions in batches of 64: (prompts, completions), each prompt repeated GROUP times."""
    out = []
    for _ in range(max(1, count // (GROUP * PROMPTS_PER_BATCH))):
        prompts, completions = [], []
        for _ in range(PROMPTS_PER_BATCH):
            question = " ".join(rng.choices(WORDS, k=rng.randint(8, 30))) + "?"
            prompt = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": question}]
            for _ in range(GROUP):
                prompts.append(prompt)
                completions.append(" ".join(rng.choices(WORDS, k=rng.randint(20, 60))))
        out.append((prompts, completions))
    return out


def baseline(folder: Path):
    """TRL's formula by hand, as a function of (prompts, completions) -> scores."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    model.config.pad_token_id = tokenizer.pad_token_id

    def score(prompts, completions):
        texts = [tokenizer.apply_chat_template(p + [{"role": "assistant", "content": c}], tokenize=False)
                 for p, c in zip(prompts, completions)]
        inputs = tokenizer(texts, return_tensors="pt", padding=True, padding_side="right", add_special_tokens=False)
        with torch.inference_mode():
            return model(**inputs).logits[:, 0].tolist()

    return score


def rate(score, work: list[tuple[list, list[str]]], repeat: int) -> tuple[float, list[float]]:
    """(median completions/s over `repeat` passes, the last pass's scores)."""
    rates, scores = [], []
    for _ in range(repeat):
        scores, start = [], time.perf_counter()
        for prompts, completions in work:
            scores.extend(score(prompts, completions))
        rates.append(len(scores) / (time.perf_counter() - start))
    return statistics.median(rates), scores


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=256, help="completions per pass (batches of 64)")
    parser.add_argument("--batch-size", type=int, default=16, help="reward_model batch_size")
    parser.add_argument("--hidden", type=int, default=64, help="hidden size of the tiny reward model")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.builtin.reward_model import reward_model, rm_texts
    from tiny_reward_model import build_tiny_reward_model

    work = batches(args.count, random.Random(args.seed))
    with tempfile.TemporaryDirectory() as directory:
        folder = build_tiny_reward_model(Path(directory), hidden_size=args.hidden)
        ours = reward_model(str(folder), batch_size=args.batch_size, device="cpu")
        start = time.perf_counter()
        ours(*work[0])  # loads the weights
        load_s = time.perf_counter() - start
        texts = [t for prompts, completions in work for t in rm_texts(prompts, completions, ours.tokenizer)]
        tokens = statistics.mean(len(ids) for ids in ours.tokenizer(texts, add_special_tokens=False)["input_ids"])
        ours_rate, ours_scores = rate(ours, work, args.repeat)
        base_rate, base_scores = rate(baseline(folder), work, args.repeat)
    difference = max(abs(a - b) for a, b in zip(ours_scores, base_scores))
    print(f"tiny RM: 2 layers, hidden {args.hidden}; CPU, {torch.get_num_threads()} torch threads; "
          f"{len(ours_scores)} completions per pass, batches of {GROUP * PROMPTS_PER_BATCH}, {tokens:.0f} tokens per text")
    print(f"first call (loads the weights): {load_s:.2f} s")
    print(f"ours (reward_model, batch_size {args.batch_size}): {ours_rate:,.0f} completions/s")
    print(f"baseline (TRL's formula, one batch of 64):        {base_rate:,.0f} completions/s")
    print(f"ours / baseline: {ours_rate / base_rate:.2f} (goal >= 0.8); largest score difference {difference:.2e}")
    return 0 if ours_rate >= 0.8 * base_rate and difference < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
