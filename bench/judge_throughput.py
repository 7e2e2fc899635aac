"""Judge throughput: our judge reward vs a naive sequential client, against the loopback judge server.

    python bench/judge_throughput.py                  # full run (the naive baseline takes ~2 minutes)
    python bench/judge_throughput.py --baseline-calls 8   # baseline on 8 calls, scaled to 64 (marked ~)

The server (tests/judge_server.py) runs in its own process with 1.0 s latency per call. Scenarios:
  clean  64 calls                                             goal <= 1.3 s wall
  429    64 calls, 10% of requests answered 429 with Retry-After 0.5 s   goal <= 2.5 s wall
Our reward is called the way TRL calls async rewards: on an event loop in a daemon thread, through
asyncio.run_coroutine_threadsafe, with max_concurrency 64 (the default 16 would take 4 waves) and a fresh
sqlite cache (so every call is a miss and still pays the cache write). A warm-up call first pays the
one-time costs (importing openai, building the client); its time is shown apart. The baseline is what
the seed did: a new client per call, one call after another, sleeping Retry-After on a 429.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SCORE_TYPES = [{"name": "score", "type": "score", "min": 1, "max": 10}]
PROMPT_YAML = """# Benchmark judge prompt: one 1-10 score.
- role: system
  content: You grade answers.
- role: user
  content: "Question: {input_text}\\n\\nAnswer:\\n{output_text}\\n\\nGrade it 1-10 as <score>N</score>."
"""


class JudgeServerProcess:
    def __init__(self, latency: float, fault_rate: float = 0.0, retry_after: float = 0.5):
        command = [sys.executable, str(ROOT / "tests" / "judge_server.py"), "--latency", str(latency),
                   "--fault-rate", str(fault_rate), "--retry-after", str(retry_after)]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        port = int(self.process.stdout.readline().split()[1])
        self.base_url = f"http://127.0.0.1:{port}/v1"

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=10)


def batch(tag: str, count: int) -> tuple[list, list]:
    prompts = [[{"role": "user", "content": f"{tag} question {i}: what is {i} + {i}?"}] for i in range(count)]
    completions = [f"{i} + {i} = {2 * i}" for i in range(count)]
    return prompts, completions


def run_ours(base_url: str, calls: int, prompt_path: Path, cache_path: Path, tag: str) -> dict:
    from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.judge.reward import generic_llm_reward

    reward = generic_llm_reward(
        system_prompt_path=str(prompt_path), score_types=SCORE_TYPES, eval_llm_name="judge",
        eval_llm_base_url=base_url, eval_llm_api_key="sk-bench", max_concurrency=64, timeout=30,
        cache_path=str(cache_path), metric_name=f"bench_{tag}",
    )
    loop = asyncio.new_event_loop()  # TRL: an event loop in a daemon thread, fed by run_coroutine_threadsafe
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        started = time.perf_counter()
        asyncio.run_coroutine_threadsafe(reward(*batch(f"warm-up {tag}", 1)), loop).result()
        warm_up = time.perf_counter() - started
        walls = []
        for step in ("first", "next"):  # the first step opens the connections; later steps reuse them
            prompts, completions = batch(f"{tag} {step}", calls)
            started = time.perf_counter()
            rewards = asyncio.run_coroutine_threadsafe(reward(prompts, completions), loop).result()
            walls.append(time.perf_counter() - started)
            if step == "first":
                metrics = dict(reward.last_metrics)
                scored = sum(r is not None for r in rewards)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
    return {"wall": walls[0], "next": walls[1], "warm_up": warm_up, "scored": scored,
            "retries": int(metrics["retries"]), "http_429": int(metrics["http_429"]),
            "p95": metrics.get("latency_p95", 0.0)}


def run_naive(base_url: str, calls: int, prompt_path: Path) -> dict:
    """The seed's way: a new client per row, calls one after another, a fixed sleep on errors."""
    import openai
    import yaml

    from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.judge.parsing import criteria_from_config, parse_judgement

    template = yaml.safe_load(prompt_path.read_text())
    criteria = criteria_from_config(SCORE_TYPES)
    prompts, completions = batch("naive", calls)
    scored = retries = 0
    started = time.perf_counter()
    for prompt, completion in zip(prompts, completions):
        messages = [{"role": m["role"], "content": m["content"].replace("{input_text}", prompt[-1]["content"])
                     .replace("{output_text}", completion)} for m in template]
        for attempt in range(4):
            client = openai.OpenAI(base_url=base_url, api_key="sk-bench", max_retries=0)
            try:
                answer = client.chat.completions.create(model="judge", messages=messages)
            except openai.RateLimitError as error:
                retries += 1
                time.sleep(float(error.response.headers.get("retry-after", 1)))
                continue
            scored += parse_judgement(answer.choices[0].message.content, criteria).ok
            break
    return {"wall": time.perf_counter() - started, "scored": scored, "retries": retries}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=64)
    parser.add_argument("--baseline-calls", type=int, default=None, help="naive calls to time (scaled to --calls)")
    parser.add_argument("--latency", type=float, default=1.0)
    args = parser.parse_args()
    baseline_calls = args.baseline_calls or args.calls

    scenarios = [("clean", 0.0, 1.3), ("10% 429 (Retry-After 0.5 s)", 0.1, 2.5)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        prompt_path = Path(tmp, "bench_prompt.yaml")
        prompt_path.write_text(PROMPT_YAML)
        for index, (name, fault_rate, goal) in enumerate(scenarios):
            server = JudgeServerProcess(args.latency, fault_rate)
            try:
                ours = run_ours(server.base_url, args.calls, prompt_path, Path(tmp, f"cache{index}.sqlite"), str(index))
                naive = run_naive(server.base_url, baseline_calls, prompt_path)
            finally:
                server.close()
            naive_wall = naive["wall"] * args.calls / baseline_calls
            rows.append((name, goal, ours, naive, naive_wall))

    scaled = "~" if baseline_calls != args.calls else ""
    print(f"\n{args.calls} judge calls, server latency {args.latency:.1f} s, server in its own process\n")
    header = f"{'scenario':<30} {'ours wall':>10} {'goal':>7} {'met':>4} {'naive wall':>11} {'speed-up':>9} " \
             f"{'scored':>7} {'retries':>8} {'429s':>5} {'p95':>6} {'next step':>10} {'warm-up':>8}"
    print(header)
    print("-" * len(header))
    for name, goal, ours, naive, naive_wall in rows:
        print(f"{name:<30} {ours['wall']:>9.2f}s {goal:>6.1f}s {'yes' if ours['wall'] <= goal else 'NO':>4} "
              f"{scaled + format(naive_wall, '.1f') + 's':>11} {naive_wall / ours['wall']:>8.1f}x "
              f"{ours['scored']:>3}/{args.calls:<3} {ours['retries']:>8} {ours['http_429']:>5} "
              f"{ours['p95']:>5.2f}s {ours['next']:>9.2f}s {ours['warm_up']:>7.2f}s")
    print("\nours wall / goal / scored / retries / 429s / p95: the first step of 64 calls (after a one-call warm-up);"
          " next step: the same again on open connections; warm-up: the first call (imports openai, opens the client)")
    print(f"naive baseline: {baseline_calls} sequential calls timed"
          + (f", scaled to {args.calls}" if scaled else "")
          + "; scored " + ", ".join(f"{n['scored']}/{baseline_calls}" for _, _, _, n, _ in rows))


if __name__ == "__main__":
    main()
