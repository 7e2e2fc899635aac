"""Tests for data.py / data_formats.py: formats x file types, mixing, determinism, turns, bad rows, fitting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from generation.core_pipelines.do_grpo_rl_with_a_prompt.config.schema import DatasetConfig, DatasetSettings
from generation.core_pipelines.do_grpo_rl_with_a_prompt.data.formats import DataError
from generation.core_pipelines.do_grpo_rl_with_a_prompt.data.sampling import SampledData, sample_datasets
from generation.core_pipelines.do_grpo_rl_with_a_prompt.data.truncation import fit_prompts_to_length

# ------------------------------------------------------------------------------------------- helpers


def sharegpt(i: int, exchanges: int = 1, system: str | None = None, **extra) -> dict:
    turns = [{"from": "system", "value": system}] if system is not None else []
    for t in range(exchanges):
        turns += [{"from": "human", "value": f"q{i}.{t}"}, {"from": "gpt", "value": f"a{i}.{t}"}]
    return {"conversations": turns, **extra}


def messages(i: int, exchanges: int = 1, system: str | None = None, **extra) -> dict:
    row = sharegpt(i, exchanges, system)
    role = {"system": "system", "human": "user", "gpt": "assistant"}
    return {"messages": [{"role": role[t["from"]], "content": t["value"]} for t in row["conversations"]], **extra}


def prompt_str(i: int, **extra) -> dict:
    return {"prompt": f"q{i}.0", "completion": f"a{i}.0", **extra}


def prompt_msgs(i: int, **extra) -> dict:
    return {
        "prompt": [{"role": "user", "content": f"q{i}.0"}],
        "completion": [{"role": "assistant", "content": f"a{i}.0"}],
        **extra,
    }


def write(path: Path, rows: list) -> Path:
    """Write rows as .jsonl, .json or .parquet according to the path's extension."""
    if path.suffix == ".jsonl":
        path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=7)
    return path


def sample(datasets, seed=0, base_dir=None, **settings) -> SampledData:
    settings.setdefault("total_rows", 10)
    return sample_datasets([DatasetConfig(**d) for d in datasets], DatasetSettings(**settings), seed, base_dir)


def words(messages_: list[dict]) -> int:
    """Fake token counter: words in all messages."""
    return sum(len(m["content"].split()) for m in messages_)


# ------------------------------------------------------------------------------ formats x file types


@pytest.mark.parametrize("ext", ["jsonl", "json", "parquet"])
@pytest.mark.parametrize("make", [sharegpt, messages, prompt_str, prompt_msgs])
def test_each_format_in_each_file_type(tmp_path, make, ext):
    path = write(tmp_path / f"d.{ext}", [make(i, tag=f"t{i}") for i in range(20)])
    data = sample([{"path": str(path)}], total_rows=5)
    assert len(data.train_rows) == 5 and data.eval_rows == []
    for row in data.train_rows:
        i = int(row["tag"][1:])
        assert row["prompt"] == [{"role": "user", "content": f"q{i}.0"}]
        assert row["answer"] == f"a{i}.0"
        assert row["dataset_name"] == "d"
        line = f":{i + 1}" if ext == "jsonl" else f":#{i}"
        assert row["source"] == f"{path}{line}"
    assert data.report.per_dataset["d"]["available"] == 20


def test_relative_path_uses_base_dir_and_name(tmp_path):
    write(tmp_path / "d.jsonl", [sharegpt(i) for i in range(3)])
    data = sample([{"path": "d.jsonl", "name": "mine"}], base_dir=tmp_path, total_rows=3)
    assert {row["dataset_name"] for row in data.train_rows} == {"mine"}
    assert data.train_rows[0]["source"].startswith(str(tmp_path / "d.jsonl") + ":")


def test_json_file_holding_json_lines_and_blank_lines(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps(sharegpt(0)) + "\n\n" + json.dumps(sharegpt(1)) + "\n")
    data = sample([{"path": str(path)}], total_rows=5)
    assert sorted(row["source"] for row in data.train_rows) == [f"{path}:1", f"{path}:3"]
    assert data.report.per_dataset["d"]["available"] == 2


def test_openai_text_parts_and_model_role(tmp_path):
    parts = [{"type": "text", "text": "h"}, {"type": "text", "text": "i"}]
    row = {"messages": [{"role": "user", "content": parts}, {"role": "model", "content": "yo"}]}
    data = sample([{"path": str(write(tmp_path / "d.jsonl", [row]))}], total_rows=1)
    assert data.train_rows[0]["prompt"] == [{"role": "user", "content": "hi"}] and data.train_rows[0]["answer"] == "yo"


def test_prompt_only_rows_take_answer_column(tmp_path):
    path = write(tmp_path / "d.jsonl", [{"prompt": "2+2?", "answer": "4"}, {"prompt": "hi"}])
    rows = sorted(sample([{"path": str(path)}], total_rows=2).train_rows, key=lambda r: r["source"])
    assert [r["answer"] for r in rows] == ["4", ""]


# -------------------------------------------------------------------------------------------- counts


def test_percentages_are_fractions_of_total_rows_and_need_not_sum_to_one(tmp_path):
    a = write(tmp_path / "a.jsonl", [sharegpt(i) for i in range(100)])
    b = write(tmp_path / "b.parquet", [sharegpt(i) for i in range(100)])
    data = sample([{"path": str(a), "percentage": 0.3}, {"path": str(b), "percentage": 0.5}], total_rows=100)
    names = [row["dataset_name"] for row in data.train_rows]
    assert names.count("a") == 30 and names.count("b") == 50
    assert len({row["source"] for row in data.train_rows}) == 80  # without replacement
    assert names[:30] != ["a"] * 30  # datasets are shuffled together


def test_count_is_capped_at_usable_rows_and_reported(tmp_path):
    rows = [sharegpt(i) for i in range(8)] + ["{broken", {"conversations": []}]
    path = write(tmp_path / "small.jsonl", rows)
    data = sample([{"path": str(path), "percentage": 1.0}], total_rows=20)
    entry = data.report.per_dataset["small"]
    assert (entry["requested"], entry["available"], entry["sampled"], entry["skipped_bad"]) == (20, 10, 8, 2)
    assert entry["capped"] is True
    assert "capped" in data.report.summary() and "small" in data.report.summary()


def test_zero_percentage_reads_nothing(tmp_path):
    path = write(tmp_path / "d.jsonl", [sharegpt(0)])
    data = sample([{"path": str(path), "percentage": 0.0}])
    assert data.train_rows == [] and data.report.per_dataset["d"]["available"] is None


def test_eval_percentage_and_eval_path(tmp_path):
    train = write(tmp_path / "train.jsonl", [sharegpt(i) for i in range(100)])
    held = write(tmp_path / "held.json", [messages(i) for i in range(10)])
    data = sample([{"path": str(train), "percentage": 0.5, "eval_percentage": 0.2}],
                  total_rows=100, eval_path=str(held), eval_rows=4)
    from_train = [row for row in data.eval_rows if "train.jsonl" in row["source"]]
    from_file = [row for row in data.eval_rows if "held.json" in row["source"]]
    assert len(data.train_rows) == 40 and len(from_train) == 10 and len(from_file) == 4
    # eval_path rows are scored by the first dataset's rewards (dataset_settings.eval_rewards_from)
    assert {row["dataset_name"] for row in data.eval_rows} == {"train"}
    assert not {r["source"] for r in data.train_rows} & {r["source"] for r in from_train}
    assert data.report.per_dataset["train"]["eval"] == 10 and data.report.per_dataset["train"]["train"] == 40
    assert data.report.per_dataset["held (eval_path)"]["eval"] == 4


# ------------------------------------------------------------------------------------------ determinism


def test_same_seed_same_rows_in_same_order_different_seed_differs(tmp_path):
    path = write(tmp_path / "d.jsonl", [sharegpt(i, exchanges=3) for i in range(500)])
    spec = [{"path": str(path), "single_turn_ratio": 0.5, "eval_percentage": 0.1}]
    first, again, other = (sample(spec, seed=seed, total_rows=50) for seed in (1, 1, 2))
    assert first.train_rows == again.train_rows and first.eval_rows == again.eval_rows
    assert [r["source"] for r in first.train_rows] != [r["source"] for r in other.train_rows]


# ------------------------------------------------------------------------------------ prompts and turns


def test_system_prompt_is_prepended_or_inserted(tmp_path):
    path = write(tmp_path / "d.jsonl", [sharegpt(0, system="be brief"), sharegpt(1)])
    rows = sample([{"path": str(path), "system_prompt": "SP"}], total_rows=2).train_rows
    rows.sort(key=lambda r: r["source"])
    assert rows[0]["prompt"][0] == {"role": "system", "content": "SP\n\nbe brief"}
    assert rows[1]["prompt"][0] == {"role": "system", "content": "SP"} and rows[1]["prompt"][1]["role"] == "user"


def test_empty_system_message_is_left_out(tmp_path):
    path = write(tmp_path / "d.jsonl", [sharegpt(0, system="")])
    row = sample([{"path": str(path)}], total_rows=1).train_rows[0]
    assert row["prompt"] == [{"role": "user", "content": "q0.0"}]


@pytest.mark.parametrize(
    "options, expected_answer",
    [({}, "a0.2"), ({"force_single_turn": True}, "a0.0"), ({"single_turn_ratio": 1.0}, "a0.0"),
     ({"single_turn_ratio": 1.0, "force_single_turn": False}, "a0.0")],
)
def test_single_turn_options(tmp_path, options, expected_answer):
    path = write(tmp_path / "d.jsonl", [sharegpt(0, exchanges=3)])
    row = sample([{"path": str(path), **options}], total_rows=1).train_rows[0]
    assert row["answer"] == expected_answer
    assert row["prompt"][-1]["role"] == "user" and len(row["prompt"]) == (5 if expected_answer == "a0.2" else 1)


def test_single_turn_ratio_mixes_first_and_last(tmp_path):
    path = write(tmp_path / "d.jsonl", [sharegpt(i, exchanges=2) for i in range(200)])
    rows = sample([{"path": str(path), "single_turn_ratio": 0.5}], total_rows=200).train_rows
    first = sum(row["answer"].endswith(".0") for row in rows)
    assert 60 < first < 140


# ------------------------------------------------------------------------------------------- bad rows

BAD_ROWS = {
    2: ("{not json", "broken JSON line"),
    4: ({"conversations": [{"from": "human", "value": "only a question"}]}, "no assistant turn"),
    5: ({"conversations": [{"from": "robot", "value": "x"}, {"from": "gpt", "value": "y"}]}, "unknown role 'robot'"),
    7: ({"conversations": [{"from": "human", "value": "  "}, {"from": "gpt", "value": "y"}]}, "empty text"),
    9: ({"messages": []}, "missing 'conversations'"),
}


def bad_file(tmp_path: Path, good: int) -> Path:
    rows, i = [], 0
    for line in range(1, good + len(BAD_ROWS) + 1):
        if line in BAD_ROWS:
            rows.append(BAD_ROWS[line][0])
        else:
            rows.append(sharegpt(i))
            i += 1
    return write(tmp_path / "bad.jsonl", rows)


def test_bad_rows_are_skipped_counted_and_named_by_file_and_line(tmp_path):
    path = bad_file(tmp_path, good=10)
    data = sample([{"path": str(path)}], total_rows=15)
    assert len(data.train_rows) == 10  # more requested than there are good rows: every row was seen
    assert data.report.per_dataset["bad"]["skipped_bad"] == 5
    examples = sorted(data.report.bad_row_examples, key=lambda e: int(e.split(":")[1]))
    for example, (line, (_, reason)) in zip(examples, sorted(BAD_ROWS.items())):
        assert example.startswith(f"{path}:{line}: ") and reason in example


def test_replacements_meet_the_requested_count(tmp_path):
    path = bad_file(tmp_path, good=30)
    for seed in range(5):
        data = sample([{"path": str(path)}], seed=seed, total_rows=28)
        assert len(data.train_rows) == 28 and all(r["answer"].startswith("a") for r in data.train_rows)


def test_strict_mode_raises_on_the_first_bad_row(tmp_path):
    path = bad_file(tmp_path, good=3)
    with pytest.raises(DataError, match=rf"{path}:\d+: "):
        sample([{"path": str(path)}], total_rows=8, strict=True)


@pytest.mark.parametrize(
    "name, content, message",
    [("missing.jsonl", None, "file not found"), ("d.csv", "a,b\n", "unsupported file type"),
     ("d.jsonl", '{"text": "hello"}\n', "unknown row format"), ("d.json", "[1,", "not valid JSON"),
     ("d.json", '{"rows": []}', "expected a JSON array")],
)
def test_data_errors_name_the_file(tmp_path, name, content, message):
    if content is not None:
        (tmp_path / name).write_text(content)
    with pytest.raises(DataError, match=message) as error:
        sample([{"path": str(tmp_path / name)}])
    assert str(tmp_path / name) in str(error.value)


# -------------------------------------------------------------------------------------- prompt length


def long_rows(tmp_path: Path) -> SampledData:
    rows = [
        {"conversations": [{"from": "system", "value": "sys"}]
         + [{"from": "human" if t % 2 == 0 else "gpt", "value": " ".join(["w"] * 10)} for t in range(6)], "k": 0},
        {"conversations": [{"from": "human", "value": "short"}, {"from": "gpt", "value": "ok"}], "k": 1},
        {"conversations": [{"from": "human", "value": " ".join(["w"] * 50)}, {"from": "gpt", "value": "ok"}], "k": 2},
    ]
    # 6 turns, last one gpt: the target is the last assistant turn, so the prompt is sys + 5 turns (51 words)
    return sample([{"path": str(write(tmp_path / "long.jsonl", rows)), "eval_percentage": 0.34}], total_rows=3)


def test_truncate_drops_early_turns_keeps_system_and_drops_what_cannot_fit(tmp_path):
    data = long_rows(tmp_path)
    fitted = fit_prompts_to_length(data, words, 35, "truncate")
    rows = {row["k"]: row for row in fitted.train_rows + fitted.eval_rows}
    assert set(rows) == {0, 1}
    prompt = rows[0]["prompt"]
    assert [m["role"] for m in prompt] == ["system", "user", "assistant", "user"]  # 51 -> 31 words
    assert words(prompt) <= 35 and rows[1]["prompt"] == [{"role": "user", "content": "short"}]
    entry = fitted.report.per_dataset["long"]
    assert (entry["truncated"], entry["dropped_overlong"]) == (1, 1)
    assert data.report.per_dataset["long"]["truncated"] == 0  # the input is left unchanged


def test_truncate_to_the_final_user_turn(tmp_path):
    fitted = fit_prompts_to_length(long_rows(tmp_path), words, 11, "truncate")
    row = next(r for r in fitted.train_rows + fitted.eval_rows if r["k"] == 0)
    assert [m["role"] for m in row["prompt"]] == ["system", "user"]


def test_drop_mode_and_no_limit(tmp_path):
    data = long_rows(tmp_path)
    fitted = fit_prompts_to_length(data, words, 25, "drop")
    assert [row["k"] for row in fitted.train_rows + fitted.eval_rows] == [1]
    entry = fitted.report.per_dataset["long"]
    assert (entry["truncated"], entry["dropped_overlong"]) == (0, 2)
    assert fit_prompts_to_length(data, words, None, "drop") is data


def test_eval_path_rows_count_under_their_own_entry(tmp_path):
    train = write(tmp_path / "t.jsonl", [sharegpt(0)])
    held = write(tmp_path / "t.parquet", [{"prompt": " ".join(["w"] * 40)}])
    data = sample([{"path": str(train)}], total_rows=1, eval_path=str(held))
    fitted = fit_prompts_to_length(data, words, 10, "drop")
    assert fitted.report.per_dataset["t (eval_path)"]["dropped_overlong"] == 1
    assert fitted.report.per_dataset["t"]["dropped_overlong"] == 0


# -------------------------------------------------------------------------------------- extra columns


def test_extra_columns_concatenate_into_one_hf_dataset(tmp_path):
    datasets = pytest.importorskip("datasets")
    a = write(tmp_path / "a.jsonl", [sharegpt(i, id=i, level="easy", nested={"x": 1}) for i in range(5)])
    b = write(tmp_path / "b.parquet", [prompt_str(i, id=f"b{i}", score=0.5 + i, flag=True) for i in range(5)])
    c = write(tmp_path / "c.json", [messages(i, score=i) for i in range(5)])
    data = sample([{"path": str(p), "percentage": 0.5} for p in (a, b, c)], total_rows=10, eval_path=str(c))
    rows = data.train_rows + data.eval_rows
    assert all(list(row) == list(rows[0]) for row in rows)  # same columns, same order
    assert "nested" not in rows[0]
    assert {type(row["id"]) for row in rows} == {str, type(None)}  # int and str -> str
    assert {type(row["score"]) for row in rows} <= {float, type(None)}  # int and float -> float
    table = datasets.Dataset.from_list(rows)
    assert len(table) == len(rows) and set(table.column_names) >= {"prompt", "answer", "id", "level", "flag"}


def test_summary_lists_every_dataset(tmp_path):
    path = write(tmp_path / "d.jsonl", [sharegpt(0)])
    text = sample([{"path": str(path)}], total_rows=1).report.summary()
    assert text.splitlines()[0].startswith("dataset") and "\nd " in text
