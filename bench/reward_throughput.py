"""Reward throughput: final_answer_match (mode math) on 10,000 completions vs a plain math-verify loop.

    python bench/reward_throughput.py                       # 1.5 to 3 minutes on a busy 2-core machine
    python bench/reward_throughput.py --count 2000 --baseline-count 500

Three workloads, seeded, in batches of 64 completions (8 prompts x 8 generations, so each reference
appears 8 times in a batch, as in GRPO):
  plain   GSM8K-style "<think>...</think> #### 72" against "#### 72" (half right)   goal >= 5,000 completions/s
  latex   \\boxed{\\sqrt{12}}, \\boxed{\\frac{\\pi}{4}}, polynomials, tuples, intervals, sets against LaTeX
          references: none a plain number, so all go through math-verify      goal >= 500 completions/s
  worst   pathological answers (\\boxed{10^{10^{10}}}, huge powers); the slowest single call is reported:
          each parse and each comparison is cut off after timeout_s, so goal <= 6 x timeout_s
Each workload runs twice: from the main thread (math-verify in-process) and from a worker thread, the way
TRL calls our async combined reward (a batch's distinct pairs go to helper processes, one per core). The
baseline is what TRL's accuracy_reward does per completion: math_verify.parse(reference),
parse(completion), verify(...), in the main thread. Printed: completions/s (wall clock), completions per
CPU-second of this process (main thread: robust to a busy machine), and ours / baseline (wall).
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GROUP, PROMPTS_PER_BATCH = 8, 8
PATHOLOGICAL = [r"\boxed{10^{10^{10}}}", r"\boxed{9^{9^{9^{9}}}}", r"\boxed{(x+1)^{100000}}", r"\boxed{100000!}"]


def plain_rows(count: int, rng: random.Random) -> list[tuple[str, str]]:
    rows = []
    for _ in range(count // GROUP):
        value = rng.randint(1, 5000)
        reference = f"Natalia sold {value // 2} clips, then more.\n#### {value:,}"
        for _ in range(GROUP):
            given = value if rng.random() < 0.5 else value + rng.randint(1, 9)
            reasoning = f"<think>{value // 2} + {value - value // 2} = {given}</think>"
            rows.append((f"{reasoning} So the answer is #### {given}", reference))
    return rows


def latex_rows(count: int, rng: random.Random) -> list[tuple[str, str]]:
    """Answers that are not plain numbers, so every pair goes through math-verify, weighted roughly like the
    non-numeric answers of MATH (radicals and pi most, then polynomials, tuples, intervals, sets)."""
    def item() -> tuple[str, list[str], list[str]]:  # (reference, equivalent forms, wrong forms)
        a, b, n = rng.randint(1, 40), rng.randint(41, 90), rng.randint(2, 9)
        forms = [
            (rf"{n}\sqrt{{3}}", [rf"\sqrt{{{3 * n * n}}}", rf"{n}\sqrt3"], [rf"{n}\sqrt{{2}}", rf"\sqrt{{{3 * n}}}"]),
            (rf"\frac{{{a}\pi}}{{{b}}}", [rf"\frac{{{a}}}{{{b}}}\pi", rf"\dfrac{{{a}\pi}}{{{b}}}"],
             [rf"\frac{{\pi}}{{{b}}}"]),
            (rf"x^2 + {a}", [rf"{a} + x^{{2}}"], [rf"x^2 - {a}", rf"x^3 + {a}"]),
            (rf"({a}, {b})", [rf"\left({a},{b}\right)"], [rf"({b}, {a})"]),
            (rf"[{a}, {b})", [rf"[{a},{b})"], [rf"({a}, {b}]"]),
            (rf"\{{{a}, {b}\}}", [rf"\{{{b},{a}\}}"], [rf"\{{{a}\}}"]),
        ]
        return rng.choices(forms, weights=[4, 3, 2, 1, 1, 1])[0]

    rows = []
    for _ in range(count // GROUP):
        reference, right, wrong = item()
        for _ in range(GROUP):
            given = rng.choice(right if rng.random() < 0.5 else wrong)
            rows.append((rf"<think>work</think> The answer is \boxed{{{given}}}.", reference))
    return rows


def score_ours(rows: list[tuple[str, str]], timeout_s: int) -> tuple[float, float, float]:
    """(wall seconds for all rows, slowest batch, this process's CPU seconds) through final_answer_match."""
    from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.builtin.answers import final_answer_match

    reward = final_answer_match(mode="math", cot_start="<think>", cot_end="</think>", timeout_s=timeout_s)
    size, slowest, start, cpu = GROUP * PROMPTS_PER_BATCH, 0.0, time.perf_counter(), time.process_time()
    for i in range(0, len(rows), size):
        chunk = rows[i : i + size]
        began = time.perf_counter()
        reward([[]] * len(chunk), [c for c, _ in chunk], answer=[r for _, r in chunk])
        slowest = max(slowest, time.perf_counter() - began)
    return time.perf_counter() - start, slowest, time.process_time() - cpu


def in_worker_thread(function, *args):
    result = []
    thread = threading.Thread(target=lambda: result.append(function(*args)), name="trl-async-loop-like")
    thread.start()
    thread.join()
    return result[0]


def score_baseline(rows: list[tuple[str, str]], timeout_s: int) -> tuple[float, float]:
    """(wall, CPU seconds) for TRL's accuracy_reward recipe, one completion at a time: parse the reference
    (as a MATH solution ends: in \\boxed{}), parse the answer, verify."""
    from math_verify import parse, verify

    start, cpu = time.perf_counter(), time.process_time()
    for completion, reference in rows:
        solution = reference if "####" in reference else "\\boxed{" + reference + "}"
        gold = parse(solution, parsing_timeout=timeout_s)
        if gold:
            verify(gold, parse(completion.split("</think>")[-1], parsing_timeout=timeout_s), timeout_seconds=timeout_s)
    return time.perf_counter() - start, time.process_time() - cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000, help="completions per workload")
    parser.add_argument("--baseline-count", type=int, default=2_000, help="completions the baseline scores")
    parser.add_argument("--timeout-s", type=int, default=2, help="final_answer_match timeout_s")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import logging

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    rng = random.Random(args.seed)
    workloads = {"plain": plain_rows(args.count, rng), "latex": latex_rows(args.count, rng)}
    goals = {"plain": 5_000, "latex": 500}
    score_ours(workloads["latex"][:64], args.timeout_s)  # warm-up: imports, sympy caches
    in_worker_thread(score_ours, workloads["latex"][:64], args.timeout_s)  # starts the helper process
    print(f"{'workload':8} {'thread':7} {'completions/s':>14} {'per CPU-s':>10} {'baseline/s':>11} {'ours/base':>9} "
          f"{'goal':>7}")
    failed = False
    for name, rows in workloads.items():
        baseline_wall, _ = score_baseline(rows[: args.baseline_count], args.timeout_s)
        baseline_rate = min(len(rows), args.baseline_count) / baseline_wall
        for thread in ("main", "worker"):
            seconds, _, cpu = score_ours(rows, args.timeout_s) if thread == "main" else in_worker_thread(
                score_ours, rows, args.timeout_s)
            rate = len(rows) / seconds
            per_cpu = f"{len(rows) / cpu:10,.0f}" if thread == "main" else f"{'(helpers)':>10}"
            failed |= rate < goals[name]
            print(f"{name:8} {thread:7} {rate:14,.0f} {per_cpu} {baseline_rate:11,.0f} {rate / baseline_rate:9.1f}x "
                  f"{'>=' + format(goals[name], ','):>7}{'' if rate >= goals[name] else '  MISSED'}")
    for thread in ("main", "worker"):
        worst = 0.0
        for completion in PATHOLOGICAL:
            row = [(completion, "5")]
            _, slowest, _ = score_ours(row, args.timeout_s) if thread == "main" else in_worker_thread(
                score_ours, row, args.timeout_s)
            worst = max(worst, slowest)
        bound = 6 * args.timeout_s
        failed |= worst > bound
        print(f"worst    {thread:7} slowest single case {worst:6.2f} s (timeout_s {args.timeout_s}, goal <= {bound} s)"
              f"{'' if worst <= bound else '  MISSED'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
