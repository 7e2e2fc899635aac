"""Judge-bound GRPO: wall time per step with a judge of latency L, four ways, side by side in one run.

    python bench/judge_bound.py [--steps 18] [--warmup 2] [--hidden 256] [--tokens 32] [--latencies 0.5,1,3]
    python bench/judge_bound.py --ties       # dynamic sampling against a judge that ties often
    python bench/judge_bound.py --quality    # SmolLM2 default, L = its step time: overlap vs synchronous reward

A small random-weight Llama (built here, no download), the shipped short-answer prompts, 8 completions of 32
tokens per step. The judge is the loopback OpenAI-compatible server of tests/judge_server.py, answering after
L seconds (a brevity grade); L is set to 0.5x, 1x and 3x the judge-free step time T measured first. Variants,
each in its own process, one after the other:

  judge_free   the same grade computed in-process (max_length): the floor
  synchronous  today's behaviour: every step waits for its judge calls
  spg4         steps_per_generation 4: one judged round of 4x the completions serves 4 steps
  overlap      reward.overlap_judging: round k+1 is judged while round k trains

Step time = the median, over generation rounds after step `warmup` (4 steps for spg4, else 1), of a round's
wall time per step; the last step is left out (it also pays for the end of the run). A median, because the
machine may be shared and load spikes would skew a mean. The judge-free floor is measured again right before
each latency's variants (the load of a shared machine drifts); each run prints what its judge did, and
overlap the judge wait it still paid per step (`overlap/judge_wait_seconds`).
Goals: overlap / judge_free <= 1.15 while L <= T; synchronous / overlap >= 1.6 at L = T.

--ties: a coarse judge (7 for every answer to half of the questions, else the brevity grade) with and without
reward.dynamic_sampling: share of tied (zero-variance) groups in the TRAINED batches, and what the refills
cost (groups generated per group trained, step time). --quality: the shipped default (SmolLM2-135M, 40 steps, about 8 minutes a run on 2
cores), its local judge swapped for the loopback judge with L = the default's step time; reports both runs'
first and last-window reward. Goal: overlap's last window >= 0.9x the synchronous one's.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]
DATA = ROOT / "inputs" / "grpo_default" / "short_answers.jsonl"
DEFAULT_CONFIG = ROOT / "generation" / "core_pipelines" / "do_grpo_rl_with_a_prompt" / "config.yaml"
FENCED = re.compile(r"<<<BEGIN RESPONSE>>>\n(.*?)\n<<<END RESPONSE", re.S)


def brevity_grade(body: dict, index: int):
    """The judge: 10 for at most 12 words, one point less per extra word (at least 1)."""
    from judge_server import last_user_text, scores_reply

    found = FENCED.search(last_user_text(body))
    words = len((found.group(1) if found else last_user_text(body)).split())
    return scores_reply(quality=max(1, 10 - max(0, words - 12)))


def coarse_grade(body: dict, index: int):
    """A rubric judge that ties often: 7 for every answer to a question of even length (its rubric cannot tell
    them apart), else the brevity grade."""
    from judge_server import last_user_text, scores_reply

    question = re.search(r"Question: (.*)", last_user_text(body))
    if question and len(question.group(1)) % 2 == 0:
        return scores_reply(quality=7)
    return brevity_grade(body, index)


def judge_reward(prompt: Path, base_url: str) -> dict:
    return {"name": "generic_llm_reward", "system_prompt_path": str(prompt), "eval_llm_name": "loopback-judge",
            "eval_llm_base_url": base_url, "eval_llm_api_key": "sk-bench", "cache": False, "timeout": 120,
            "max_concurrency": 64, "score_types": [{"name": "quality", "type": "score", "min": 1, "max": 10}]}


TOKENS = {"max_completion_length": 32}


def small_config(model_dir: Path, out_dir: Path, steps: int, reward: dict, reward_settings: dict, **training) -> dict:
    return {
        "training_parameters": {"learning_rate": 1e-4, "per_device_train_batch_size": 8, "num_generations": 8,
                                **TOKENS, "gradient_checkpointing": False, "beta": 0.0, "seed": 7,
                                "report_to": "none", "output_dir": str(out_dir), "max_steps": steps,
                                "save_steps": 10_000, "max_prompt_length": None, **training},
        "model": {"base_model_name": str(model_dir), "lora_rank": 16, "lora_alpha": 32, "backend": "trl"},
        "reward": {"score_save_threshold": None, **reward_settings},
        "datasets": [{"path": str(DATA), "system_prompt": "Answer in one short sentence.", "reward_funcs": [reward]}],
        "dataset_settings": {"total_rows": 80},
    }


def run(config: dict, path: Path) -> list[dict]:
    """Train `config` in a fresh process; its metrics.jsonl records."""
    path.write_text(yaml.safe_dump(config))
    done = subprocess.run([sys.executable, str(ROOT / "run_augmentoolkit.py"), "--node", "grpo-rl-pipeline", "--config",
                           str(path), "--fresh"], cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{path.name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    out = Path(config["training_parameters"]["output_dir"])
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def step_time(records: list[dict], warmup: int, round_steps: int = 1) -> float:
    """Median wall time per step over whole generation rounds (`round_steps` steps each) after `warmup`, the
    last step left out (it also pays for the end of the run): robust to the load spikes of a shared machine."""
    stamps = {}
    for record in records:
        if record.get("step", 0) >= 1 and "loss" in record:
            stamps.setdefault(record["step"], record["wall_time"])
    ends = [step for step in range(warmup, max(stamps)) if step % round_steps == warmup % round_steps]
    return statistics.median((stamps[b] - stamps[a]) / (b - a) for a, b in zip(ends, ends[1:]))


def judge_seen(records: list[dict]) -> str:
    """What the judge did in a run: calls per step, mean latency, completions left unscored."""
    calls = mean(records, "judge/generic_llm_reward/calls")
    if calls != calls:  # NaN: no judge in this run
        return "no judge"
    return (f"{calls:.1f} calls/step, latency {mean(records, 'judge/generic_llm_reward/latency_mean'):.2f} s, "
            f"{sum(r.get('rewards/generic_llm_reward/none_count', 0) for r in records):.0f} unscored")


def mean(records: list[dict], key: str) -> float:
    values = [r[key] for r in records if isinstance(r.get(key), (int, float))]
    return sum(values) / len(values) if values else float("nan")


def timing(args: argparse.Namespace, tmp: Path, model_dir: Path, prompt: Path) -> dict:
    """Per latency: the judge-free floor T (measured right before, as the machine's load drifts), then the three
    judged variants with L = factor x T."""
    from judge_server import JudgeServer

    results: dict = {}
    free = small_config(model_dir, tmp / "free", args.steps, {"name": "max_length", "max_words": 12}, {})
    variants = {"synchronous": ({}, {}), "spg4": ({}, {"steps_per_generation": 4}),
                "overlap": ({"overlap_judging": True}, {})}
    for factor in args.latencies:
        base = step_time(run(free, tmp / "free.yaml"), args.warmup)
        latency = factor * base
        group = results[f"{factor:g}T"] = {"judge_free": base, "latency": latency}
        print(f"L = {factor:g} T: judge-free T = {base:.2f} s/step, so L = {latency:.2f} s", flush=True)
        with JudgeServer(brevity_grade, latency=latency) as server:
            for name, (settings, training) in variants.items():
                config = small_config(model_dir, tmp / name, args.steps, judge_reward(prompt, server.base_url), settings,
                                      **training)
                records = run(config, tmp / f"{name}.yaml")
                group[name] = step_time(records, args.warmup, training.get("steps_per_generation", 1))
                wait = mean(records, "overlap/judge_wait_seconds")
                print(f"  {name}: {group[name]:.2f} s/step ({group[name] / base:.2f}x judge-free); judge: "
                      f"{judge_seen(records)}" + (f"; judge wait left {wait:.2f} s/step" if wait == wait else ""),
                      flush=True)
                if wait == wait:
                    group["overlap_judge_wait"] = wait
        print(f"  synchronous / overlap: {group['synchronous'] / group['overlap']:.2f}", flush=True)
    return results


def ties(args: argparse.Namespace, tmp: Path, model_dir: Path, prompt: Path) -> dict:
    from judge_server import JudgeServer

    results = {}
    with JudgeServer(coarse_grade, latency=0.0) as server:
        for name, settings in (("no_filter", {}), ("dynamic_sampling", {"dynamic_sampling": {"max_rounds": 4}})):
            config = small_config(model_dir, tmp / name, args.steps, judge_reward(prompt, server.base_url), settings)
            records = run(config, tmp / f"{name}.yaml")
            if name == "no_filter":
                tied = generated_tied = mean(records, "advantages/zero_group_share")
                cost = 1.0
            else:
                tied = mean(records, "dynamic_sampling/tied_share_trained")
                generated = mean(records, "dynamic_sampling/groups_generated")
                generated_tied = mean(records, "dynamic_sampling/groups_dropped") / generated
                cost = generated / mean(records, "dynamic_sampling/groups_trained")
            results[name] = {"tied_share_trained": tied, "groups_generated_per_trained": cost,
                             "step_time": step_time(records, args.warmup), "generated_tied_share": generated_tied}
            print(f"{name}: tied share of trained groups {tied:.2f}, groups generated per group trained {cost:.2f}, "
                  f"step time {results[name]['step_time']:.2f} s, tied share of generated groups "
                  f"{results[name]['generated_tied_share']:.2f}")
    return results


def quality(args: argparse.Namespace, tmp: Path, prompt: Path) -> dict:
    from judge_server import JudgeServer

    from generation.core_pipelines.do_grpo_rl_with_a_prompt.run.reporting import reward_trend

    default = yaml.safe_load(DEFAULT_CONFIG.read_text())
    default["datasets"][0]["path"] = str(DATA)
    free = json.loads(json.dumps(default))
    free["datasets"][0]["reward_funcs"] = free["datasets"][0]["reward_funcs"][:1]
    free["training_parameters"].update(output_dir=str(tmp / "q_free"), max_steps=6)
    base = step_time(run(free, tmp / "q_free.yaml"), 2)
    print(f"default (SmolLM2) judge-free step time: {base:.2f} s; judge latency L = that")
    results = {"step_time": base}
    with JudgeServer(brevity_grade, latency=base) as server:
        for name, settings in (("synchronous", {}), ("overlap", {"overlap_judging": True})):
            config = json.loads(json.dumps(default))
            config["datasets"][0]["reward_funcs"][1] = {**judge_reward(prompt, server.base_url), "weight": 0.25}
            config["training_parameters"]["output_dir"] = str(tmp / f"q_{name}")
            config["reward"].update(settings)
            records = run(config, tmp / f"q_{name}.yaml")
            first, last = reward_trend(records)
            results[name] = {"first_window": first, "last_window": last, "step_time": step_time(records, 2)}
            print(f"{name}: reward first window {first:.3f} -> last window {last:.3f}, step time "
                  f"{results[name]['step_time']:.2f} s")
    ratio = results["overlap"]["last_window"] / results["synchronous"]["last_window"]
    print(f"overlap / synchronous last-window reward: {ratio:.2f} (goal >= 0.9: {'met' if ratio >= 0.9 else 'NOT met'})")
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=18)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--tokens", type=int, default=32, help="max_completion_length")
    parser.add_argument("--latencies", type=lambda text: [float(x) for x in text.split(",")], default=[0.5, 1.0, 3.0])
    parser.add_argument("--ties", action="store_true", help="dynamic sampling against a judge that ties often")
    parser.add_argument("--quality", action="store_true", help="the SmolLM2 default, overlap vs synchronous reward")
    args = parser.parse_args()
    TOKENS["max_completion_length"] = args.tokens
    from tiny_model import build_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        prompt = tmp / "judge.yaml"
        prompt.write_text(yaml.safe_dump([{"role": "system", "content": "You grade answers for brevity."},
                                          {"role": "user", "content": "Question: {input_text}\nAnswer:\n{output_text}\n"
                                           "Grade as <quality>N</quality> (1-10)."}]))
        if args.quality:
            results = quality(args, tmp, prompt)
        else:
            model_dir = build_tiny_model(tmp / "model", hidden_size=args.hidden)
            print(f"model: random Llama hidden={args.hidden}, 2 layers; 8 completions x {args.tokens} tokens per step; "
                  f"{args.steps} steps, timed after step {args.warmup}")
            results = ties(args, tmp, model_dir, prompt) if args.ties else timing(args, tmp, model_dir, prompt)
    if not args.ties and not args.quality:
        within = [results[f"{f:g}T"] for f in args.latencies if f <= 1.0]
        worst = max((g["overlap"] / g["judge_free"] for g in within), default=float("nan"))
        print(f"goal overlap/judge_free <= 1.15 for L <= T: worst {worst:.2f} ({'met' if worst <= 1.15 else 'NOT met'})")
        if 1.0 in args.latencies:
            speedup = results["1T"]["synchronous"] / results["1T"]["overlap"]
            print(f"goal synchronous/overlap >= 1.6 at L = T: {speedup:.2f} ({'met' if speedup >= 1.6 else 'NOT met'})")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
