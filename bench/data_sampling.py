"""Benchmark: sampling 10k rows out of 1M-row datasets, ours vs. loading it whole with `datasets`.

    python bench/data_sampling.py                      # generates the files under /tmp if absent
    python bench/data_sampling.py --cases sharegpt --path big.jsonl --rows 10000 --skip-baseline

Cases (each file has 1M rows): `sharegpt` (multi-turn ShareGPT JSONL, with the baseline), `verl_parquet`
(verl's layout: a `prompt` message list, `reward_model.ground_truth`, `extra_info`; written in row groups of
100k rows), `mapped` (GSM8K-style JSONL read through prompt_template + answer_column, nested extra_info
flattened into columns).

Each side runs in fresh subprocesses (interpreter start-up and imports included; ours --repeat times, the
median reported), with the file in the page cache (it is read once before timing). Wall time is measured
around the subprocess; peak RSS is the child's own ru_maxrss from os.wait4. The baseline is what the seed
pipeline did: `load_dataset("json")` of the whole file into a fresh cache directory, then a `.map` turning
each conversation into prompt/answer.
Goals for ours, every case: <= 2 s and <= 300 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PATH = Path(tempfile.gettempdir()) / "grpo_bench_sharegpt_1m.jsonl"

BASELINE_CODE = r"""
import sys, datasets
datasets.disable_progress_bars()
path, cache = sys.argv[1], sys.argv[2]
ds = datasets.load_dataset("json", data_files=path, split="train", cache_dir=cache)

def to_prompt(row):
    turns = row["conversations"]
    last = max(i for i, t in enumerate(turns) if t["from"] == "gpt")
    role = {"system": "system", "human": "user", "gpt": "assistant"}
    prompt = [{"role": role[t["from"]], "content": t["value"]} for t in turns[:last]]
    return {"prompt": prompt, "answer": turns[last]["value"]}

ds = ds.map(to_prompt, remove_columns=["conversations"])
print(len(ds))
"""

OURS_CODE = r"""
import json, sys
sys.path.insert(0, sys.argv[3])
from generation.core_pipelines.do_grpo_rl_with_a_prompt.config.schema import DatasetConfig, DatasetSettings
from generation.core_pipelines.do_grpo_rl_with_a_prompt.data.sampling import sample_datasets
dataset = DatasetConfig(path=sys.argv[1], **json.loads(sys.argv[4]))
data = sample_datasets([dataset], DatasetSettings(total_rows=int(sys.argv[2])), seed=42)
print(len(data.train_rows))
"""

WORDS = (
    "the of and to in is that for it as with was on be by this are or from at an which have not but "
    "model data value function return list error file number result question answer because when where "
    "how what why could would should example first second third step compute total each then therefore "
    "python code string integer array table column query request response system user server client "
    "time year people work problem solution approach method reason explain describe consider assume"
).split()


def generate_sharegpt(path: Path, rows: int, seed: int = 0) -> None:
    """Write `rows` multi-turn ShareGPT rows (about 760 bytes each on average) to `path`."""
    rng = random.Random(seed)
    text = lambda low, high: " ".join(rng.choices(WORDS, k=rng.randint(low, high)))  # noqa: E731
    tmp = path.with_suffix(".partial")
    with open(tmp, "w", encoding="utf-8") as out:
        for index in range(rows):
            turns = []
            if rng.random() < 0.3:
                turns.append({"from": "system", "value": text(4, 18)})
            for _ in range(rng.choice((1, 1, 2, 2, 3, 4))):
                turns.append({"from": "human", "value": text(3, 25)})
                turns.append({"from": "gpt", "value": text(7, 58)})
            out.write(json.dumps({"id": index, "conversations": turns}) + "\n")
    tmp.rename(path)


def generate_mapped(path: Path, rows: int, seed: int = 0) -> None:
    """Write `rows` GSM8K-style rows (question, answer, nested extra_info) to a JSONL file."""
    rng = random.Random(seed)
    text = lambda low, high: " ".join(rng.choices(WORDS, k=rng.randint(low, high)))  # noqa: E731
    tmp = path.with_suffix(".partial")
    with open(tmp, "w", encoding="utf-8") as out:
        for index in range(rows):
            row = {"question": text(10, 60), "answer": f"{text(20, 80)}\n#### {rng.randint(0, 999)}",
                   "extra_info": {"index": index, "level": rng.choice(("easy", "hard"))}}
            out.write(json.dumps(row) + "\n")
    tmp.rename(path)


def generate_verl_parquet(path: Path, rows: int, seed: int = 0, group: int = 100_000) -> None:
    """Write `rows` verl-layout rows to a Parquet file, one row group per `group` rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(seed)
    text = lambda low, high: " ".join(rng.choices(WORDS, k=rng.randint(low, high)))  # noqa: E731
    tmp = path.with_suffix(".partial")
    writer = None
    for start in range(0, rows, group):
        chunk = [{"data_source": "openai/gsm8k", "ability": "math",
                  "prompt": [{"role": "user", "content": text(10, 60)}],
                  "reward_model": {"style": "rule", "ground_truth": str(rng.randint(0, 999))},
                  "extra_info": {"split": "train", "index": index, "answer": text(20, 80)}}
                 for index in range(start, min(rows, start + group))]
        table = pa.Table.from_pylist(chunk)
        writer = writer or pq.ParquetWriter(tmp, table.schema)
        writer.write_table(table)
    writer.close()
    tmp.rename(path)


TMP = Path(tempfile.gettempdir())
CASES = {
    "sharegpt": (DEFAULT_PATH, generate_sharegpt, {}),
    "verl_parquet": (TMP / "grpo_bench_verl_1m.parquet", generate_verl_parquet, {}),
    "mapped": (TMP / "grpo_bench_mapped_1m.jsonl", generate_mapped,
               {"prompt_template": "Solve: {question}", "answer_column": "answer"}),
}
"""name -> (file, generator, DatasetConfig keys)."""


def measure(args: list[str]) -> tuple[float, float, str, float]:
    """(wall seconds, peak RSS in MB, stdout, CPU seconds) of one subprocess.

    CPU time (user + system) is printed beside wall time: on a busy machine wall time grows, CPU time less.
    """
    start = time.perf_counter()
    child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    out, err = child.stdout.read().decode(), child.stderr.read().decode()
    if child.returncode != 0:
        raise SystemExit(f"subprocess failed ({child.returncode}):\n{err[-3000:]}")
    cpu = usage.ru_utime + usage.ru_stime
    return wall, usage.ru_maxrss / 1024, out.strip(), cpu  # Linux reports ru_maxrss in KiB


def warm_page_cache(path: Path) -> None:
    """Read the file once so both sides start from the same (cached) state."""
    with open(path, "rb") as handle:
        while handle.read(1 << 24):
            pass


def main() -> None:
    """Generate the files if needed, run each case (and the baseline for sharegpt), print figures and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES), help=f"Comma-separated cases: {', '.join(CASES)}.")
    parser.add_argument("--path", type=Path, help="The sharegpt case's JSONL file (generated if absent).")
    parser.add_argument("--file-rows", type=int, default=1_000_000, help="Rows to generate when a file is absent.")
    parser.add_argument("--rows", type=int, default=10_000, help="Rows our side samples.")
    parser.add_argument("--repeat", type=int, default=3, help="Runs of our side (the median is reported).")
    parser.add_argument("--skip-baseline", action="store_true", help="Only measure our side.")
    args = parser.parse_args()

    verdict = lambda ok: "met" if ok else "MISSED"  # noqa: E731
    for case in args.cases.split(","):
        default_path, generator, keys = CASES[case]
        path = args.path if case == "sharegpt" and args.path else default_path
        if not path.exists():
            print(f"generating {args.file_rows:,} rows into {path} ...", flush=True)
            start = time.perf_counter()
            # in a child process: a child forked from a big parent would inherit (and report) its memory
            code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import data_sampling as b; " \
                   f"b.{generator.__name__}(b.Path({str(path)!r}), {args.file_rows})"
            subprocess.run([sys.executable, "-c", code], check=True)
            print(f"  done in {time.perf_counter() - start:.1f} s", flush=True)
        print(f"[{case}] file: {path} ({path.stat().st_size / 1e6:,.0f} MB)", flush=True)
        warm_page_cache(path)
        command = [sys.executable, "-c", OURS_CODE, str(path), str(args.rows), str(ROOT), json.dumps(keys)]
        runs = [measure(command) for _ in range(args.repeat)]
        ours = sorted(runs)[len(runs) // 2]
        spread = ", ".join(f"{wall:.2f} s/{rss:.0f} MB/cpu {cpu:.2f} s" for wall, rss, _, cpu in runs)
        print(f"[{case}] ours sample_datasets({args.rows:,} rows): {ours[0]:6.2f} s  {ours[1]:7.0f} MB  -> "
              f"{ours[2]} rows  (median of {len(runs)}: {spread})", flush=True)
        print(f"[{case}] goals for ours: <= 2 s ({verdict(ours[0] <= 2)}), <= 300 MB ({verdict(ours[1] <= 300)})")
        if case != "sharegpt" or args.skip_baseline:
            continue
        cache = tempfile.mkdtemp(prefix="grpo_bench_hf_cache_")
        try:
            base = measure([sys.executable, "-c", BASELINE_CODE, str(path), cache])
        finally:
            shutil.rmtree(cache, ignore_errors=True)
        print(f"[{case}] baseline load_dataset + map (all rows):  {base[0]:6.2f} s  {base[1]:7.0f} MB  "
              f"-> {base[2]} rows")
        print(f"[{case}] ratio baseline/ours: time x{base[0] / ours[0]:.1f}, peak RSS x{base[1] / ours[1]:.1f}")


if __name__ == "__main__":
    main()
