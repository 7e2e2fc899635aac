"""Layouts and column mapping (data_columns.py): detected layouts x file types, configured columns with
dotted paths, prompt_template, extra columns (flattened, reserved names renamed), and the bad rows that used
to crash later (deep nesting, lone surrogates)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError
from test_data import sample, write

from generation.core_pipelines.do_grpo_rl_with_a_prompt.data.formats import DataError
from generation.core_pipelines.do_grpo_rl_with_a_prompt.data.columns import TRL_REWARD_ARGUMENTS


def verl(i: int) -> dict:
    return {"data_source": "openai/gsm8k", "prompt": [{"role": "user", "content": f"q{i}"}], "ability": "math",
            "reward_model": {"style": "rule", "ground_truth": f"a{i}"}, "extra_info": {"split": "train", "index": i}}


LAYOUTS = {
    "verl": (verl, "verl", {"data_source": "openai/gsm8k", "ability": "math", "reward_model.style": "rule",
                            "extra_info.split": "train"}),
    "gsm8k": (lambda i: {"question": f"q{i}", "answer": f"a{i}", "level": 1}, "question/answer", {"level": 1}),
    "math": (lambda i: {"problem": f"q{i}", "solution": f"a{i}", "type": "Algebra"}, "problem/solution",
             {"type": "Algebra"}),
    "math_with_answer": (lambda i: {"problem": f"q{i}", "solution": "long", "answer": f"a{i}"}, "problem/solution",
                         {"solution": "long"}),
    "alpaca": (lambda i: {"instruction": f"q{i}", "input": "", "output": f"a{i}"}, "alpaca", {}),
}


@pytest.mark.parametrize("ext", ["jsonl", "json", "parquet"])
@pytest.mark.parametrize("kind", sorted(LAYOUTS))
def test_each_layout_in_each_file_type(tmp_path, kind, ext):
    make, layout, extras = LAYOUTS[kind]
    path = write(tmp_path / f"d.{ext}", [make(i) for i in range(12)])
    data = sample([{"path": str(path)}], total_rows=5)
    assert len(data.train_rows) == 5
    for row in data.train_rows:
        i = int(row["prompt"][0]["content"][1:])
        assert row["prompt"] == [{"role": "user", "content": f"q{i}"}]
        assert row["answer"] == f"a{i}"
        for key, value in extras.items():
            assert row[key] == value
    assert data.report.layouts["d"].startswith(f"layout {layout} (auto-detected)")
    if kind == "verl":  # every other field reaches rewards; the mapped ones are not repeated
        indices = {int(row["prompt"][0]["content"][1:]) for row in data.train_rows}
        assert {row["extra_info.index"] for row in data.train_rows} == indices
        assert "reward_model.ground_truth" not in data.train_rows[0]


def test_alpaca_joins_instruction_and_input(tmp_path):
    path = write(tmp_path / "a.jsonl", [{"instruction": "Translate", "input": "bonjour", "output": "hello"}])
    row = sample([{"path": str(path)}], total_rows=1).train_rows[0]
    assert row["prompt"] == [{"role": "user", "content": "Translate\n\nbonjour"}] and row["answer"] == "hello"


def test_configured_prompt_column_keeps_the_detected_answer_and_says_which_is_which(tmp_path):
    # seed 000: dataset_prompt_column: problem
    path = write(tmp_path / "m.jsonl", [{"problem": "2+2?", "solution": "4", "hint": "add"}])
    data = sample([{"path": str(path), "prompt_column": "hint"}], total_rows=1)
    row = data.train_rows[0]
    assert row["prompt"][0]["content"] == "add" and row["answer"] == "4" and row["problem"] == "2+2?"
    assert data.report.layouts["m"] == (
        "layout problem/solution (configured): prompt <- 'hint' (configured), answer <- 'solution' (auto-detected)")


def test_dotted_columns_reach_nested_fields_and_numbers_become_text(tmp_path):
    rows = [{"q": {"text": f"what is {i}?", "lang": "en"}, "meta": {"gold": i, "sys": "be exact"}} for i in range(4)]
    path = write(tmp_path / "n.parquet", rows)
    spec = {"path": str(path), "prompt_column": "q.text", "answer_column": "meta.gold", "system_column": "meta.sys"}
    data = sample([spec], total_rows=4)
    for row in data.train_rows:
        i = int(row["answer"])
        assert row["prompt"] == [{"role": "system", "content": "be exact"},
                                 {"role": "user", "content": f"what is {i}?"}]
        assert row["q.lang"] == "en" and "meta.gold" not in row and "q.text" not in row
    assert "(configured)" in data.report.layouts["n"]


def test_missing_answer_of_a_required_column_is_a_bad_row(tmp_path):
    path = write(tmp_path / "g.jsonl", [{"question": "a", "answer": "1"}, {"question": "b"}])
    data = sample([{"path": str(path)}], total_rows=2)
    assert len(data.train_rows) == 1 and data.report.bad_row_examples == [f"{path}:2: missing 'answer'"]


def test_prompt_template_builds_the_user_turn_and_a_missing_field_is_a_bad_row(tmp_path):
    rows = [{"question": "2+2", "extra_info": {"level": "easy"}, "answer": "4"}, {"answer": "5"},
            {"question": "3+3", "extra_info": {"level": "hard"}, "answer": "6"}]
    path = write(tmp_path / "t.jsonl", rows)
    spec = {"path": str(path), "prompt_template": "Solve: {question} ({extra_info.level!s:>5})"}
    data = sample([spec], total_rows=3)
    prompts = sorted(row["prompt"][0]["content"] for row in data.train_rows)
    assert prompts == ["Solve: 2+2 ( easy)", "Solve: 3+3 ( hard)"]
    assert sorted(row["answer"] for row in data.train_rows) == ["4", "6"]
    assert data.report.per_dataset["t"]["skipped_bad"] == 1
    assert data.report.bad_row_examples == [f"{path}:2: prompt_template names {{question}}, which this row lacks"]
    with pytest.raises(DataError, match=rf"{path}:2: prompt_template names {{question}}.*strict"):
        sample([spec], total_rows=3, strict=True)


@pytest.mark.parametrize("template, message", [("Solve it", "names no field"), ("Solve {}", "must name a field"),
                                               ("Solve {{ question }}", "single braces"),
                                               ("Solve {q", "expected '}'"), ("{a[0]}", "dotted names")])
def test_prompt_template_is_checked_with_the_config(template, message):
    from generation.core_pipelines.do_grpo_rl_with_a_prompt.config.schema import DatasetConfig

    with pytest.raises(ValidationError, match=message):
        DatasetConfig(path="d.jsonl", prompt_template=template)


def test_prompt_column_and_template_together_are_refused():
    from generation.core_pipelines.do_grpo_rl_with_a_prompt.config.schema import DatasetConfig

    with pytest.raises(ValidationError, match="give prompt_column or prompt_template"):
        DatasetConfig(path="d.jsonl", prompt_template="Q: {q}", prompt_column="q")
    with pytest.raises(ValidationError, match="not a field name or dotted path"):
        DatasetConfig(path="d.jsonl", answer_column="reward_model..ground_truth")


def test_column_settings_on_a_conversation_file_are_refused(tmp_path):
    turns = [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]
    path = write(tmp_path / "s.jsonl", [{"conversations": turns}])
    with pytest.raises(DataError, match="answer_column / system_column need prompt_column or prompt_template"):
        sample([{"path": str(path), "answer_column": "x"}], total_rows=1)


def test_unknown_layout_points_at_the_column_settings(tmp_path):
    path = write(tmp_path / "u.jsonl", [{"text": "hello", "label": 1}])
    with pytest.raises(DataError, match=r"keys \['label', 'text'\].*prompt_column"):
        sample([{"path": str(path)}], total_rows=1)
    row = sample([{"path": str(path), "prompt_column": "text"}], total_rows=1).train_rows[0]
    assert row["prompt"][0]["content"] == "hello" and row["answer"] == "" and row["label"] == 1


# ------------------------------------------------------------------------------------- extra columns


def test_columns_named_like_trl_reward_arguments_are_renamed_and_reported(tmp_path):
    names = ("prompts", "completions", "completion_ids", "trainer_state", "log_metric")
    reserved = {name: f"v-{name}" for name in names}
    path = write(tmp_path / "r.jsonl", [{"question": "q", "answer": "a", **reserved}])
    data = sample([{"path": str(path)}], total_rows=1)
    row = data.train_rows[0]
    assert not set(row) & TRL_REWARD_ARGUMENTS
    assert {f"row_{name}": value for name, value in reserved.items()}.items() <= row.items()
    assert data.report.renamed_columns["r"] == sorted(f"row_{name}" for name in reserved)


def test_a_renamed_column_that_collides_is_a_bad_row(tmp_path):
    path = write(tmp_path / "c.jsonl", [{"question": "q", "answer": "a", "prompts": 1, "row_prompts": 2},
                                        {"question": "q2", "answer": "a2"}])
    data = sample([{"path": str(path)}], total_rows=2)
    assert len(data.train_rows) == 1 and "also has 'row_prompts'" in data.report.bad_row_examples[0]


# ------------------------------------------------------------------------------------------ bad rows


def test_a_line_nested_too_deeply_is_a_bad_row(tmp_path):
    deep = '{"messages": ' + "[" * 200_000 + "]" * 200_000 + "}"
    good = json.dumps({"question": "q", "answer": "a"})
    path = tmp_path / "deep.jsonl"
    path.write_text("\n".join([good, deep, good]) + "\n")
    data = sample([{"path": str(path)}], total_rows=3)
    assert len(data.train_rows) == 2
    assert data.report.bad_row_examples == [f"{path}:2: nested too deeply for the JSON parser"]


def test_a_json_array_nested_too_deeply_is_a_data_error(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" + "[" * 200_000 + "]" * 200_000 + "]")
    with pytest.raises(DataError, match="nested too deeply"):
        sample([{"path": str(path)}], total_rows=1)


@pytest.mark.parametrize("row", [
    '{"question": "bad \\ud800 text", "answer": "a"}',
    '{"question": "q", "answer": "bad \\udfff"}',
    '{"question": "q", "answer": "a", "note": "\\ud83d alone"}',
    '{"conversations": [{"from": "human", "value": "\\ud800"}, {"from": "gpt", "value": "a"}]}',
])
def test_a_lone_surrogate_is_a_bad_row(tmp_path, row):
    good = json.dumps({"question": "fine", "answer": "ok", "note": "é"})
    if "conversations" in row:
        good = json.dumps({"conversations": [{"from": "human", "value": "é"}, {"from": "gpt", "value": "ok"}]})
    path = tmp_path / "s.jsonl"
    path.write_text("\n".join([good, row]) + "\n")
    data = sample([{"path": str(path)}], total_rows=2)
    assert len(data.train_rows) == 1 and data.train_rows[0]["answer"] == "ok"
    assert data.report.bad_row_examples[0].startswith(f"{path}:2: ")
    assert "not valid Unicode (lone surrogate" in data.report.bad_row_examples[0]
