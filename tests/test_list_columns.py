"""List-valued columns (issue 18, part 2): google/IFEval's rows reach the ifeval reward as they are, in every
format; a reward reading a column no row has stops the run at start-up; the plan says what each reward reads,
which rows carry images and which fields were left out. The whole pipeline with a tiny model is in
test_ifeval_e2e.py."""

from __future__ import annotations

import json

import pytest
from test_cli_errors import assert_user_error, dry_run
from test_data import sample, write

from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.builtin.ifeval import ifeval_instructions
from generation.core_pipelines.do_grpo_rl_with_a_prompt.config.schema import GRPOPipelineConfig
from generation.core_pipelines.do_grpo_rl_with_a_prompt.plan import describe_data
from generation.core_pipelines.do_grpo_rl_with_a_prompt.data.json_columns import decode_columns, encode_rows, json_columns
from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.columns import (
    ColumnsRead,
    check_columns_read,
    columns_read,
)
from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.registry import (
    load_reward_modules,
    register_reward_function,
)
from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.plan import resolve_rewards
from generation.errors import UserInputError

# google/IFEval's shape: the kwargs objects differ per instruction (Arrow would give each every key)
IFEVAL_ROWS = [
    {"key": 1000, "prompt": "Write a 300+ word summary of the wikipedia page about a lighthouse.",
     "instruction_id_list": ["punctuation:no_comma", "detectable_format:number_highlighted_sections",
                             "length_constraints:number_words"],
     "kwargs": [{}, {"num_highlights": 3}, {"relation": "at least", "num_words": 300}]},
    {"key": 1001, "prompt": "Name three rivers. Wrap your entire response with double quotation marks.",
     "instruction_id_list": ["startend:quotation"], "kwargs": [{}]},
    {"key": 1005, "prompt": "Describe a harbour at dawn. Include the keywords boat and gull.",
     "instruction_id_list": ["keywords:existence", "detectable_content:postscript"],
     "kwargs": [{"keywords": ["boat", "gull"]}, {"postscript_marker": "P.S."}]},
]
LIST_KEYS = ("instruction_id_list", "kwargs")


def by_key(rows):
    return {row["key"]: row for row in rows}


def without_nulls(value):
    """Parquet and 🤗 datasets store a list of objects as one struct type: every object gets every key."""
    if isinstance(value, list):
        return [without_nulls(item) for item in value]
    if isinstance(value, dict):
        return {key: without_nulls(item) for key, item in value.items() if item is not None}
    return value


def save_to_disk(path, rows):
    import datasets

    datasets.Dataset.from_list(rows).save_to_disk(str(path))
    return path


@pytest.mark.parametrize("kind", ["jsonl", "json", "parquet", "save_to_disk", "parquet_directory"])
def test_ifeval_rows_keep_their_lists_in_every_format(tmp_path, kind, monkeypatch):
    if kind == "save_to_disk":
        path = save_to_disk(tmp_path / "saved", IFEVAL_ROWS)
    elif kind == "parquet_directory":  # a hub-style folder: goes through datasets.load_dataset
        import datasets

        monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")
        (tmp_path / "hub" / "data").mkdir(parents=True)
        write(tmp_path / "hub" / "data" / "train-00000-of-00001.parquet", IFEVAL_ROWS)
        path = tmp_path / "hub"
    else:
        path = write(tmp_path / f"ifeval.{kind}", IFEVAL_ROWS)
    data = sample([{"path": str(path), "name": "ifeval"}], total_rows=3)
    rows = by_key(data.train_rows)
    assert set(rows) == {1000, 1001, 1005}
    for key, original in by_key(IFEVAL_ROWS).items():
        for column in LIST_KEYS:
            if kind in ("jsonl", "json"):
                assert rows[key][column] == original[column]  # exactly: no key added, none lost
            else:
                assert without_nulls(rows[key][column]) == original[column]
    scores = ifeval_instructions()([r["prompt"] for r in rows.values()], ["\"Yes, boat and gull.\""] * 3,
                                   **{c: [r[c] for r in rows.values()] for c in LIST_KEYS})
    assert all(isinstance(score, float) for score in scores)


def test_list_values_survive_the_hf_dataset_trl_builds(tmp_path):
    """TRL makes a datasets.Dataset of the rows: JSON text there, decoded for the reward, equal to the row."""
    import datasets

    mixed = [{**row, "tags": ["a", {"b": 1}] if i == 0 else "plain text"} for i, row in enumerate(IFEVAL_ROWS)]
    data = sample([{"path": str(write(tmp_path / "ifeval.jsonl", mixed))}], total_rows=3)
    names = json_columns(data.train_rows)
    assert names == {"instruction_id_list", "kwargs", "tags"}
    table = datasets.Dataset.from_list(encode_rows(data.train_rows, names))
    inputs = [table[i] for i in range(len(table))]  # as TRL reads its batches, then gives rewards each column
    batch = {column: [example[column] for example in inputs] for column in table.column_names if column != "prompt"}
    decoded = decode_columns(batch, names)
    for i, key in enumerate(decoded["key"]):
        original = by_key(mixed)[key]
        assert {c: decoded[c][i] for c in ("instruction_id_list", "kwargs", "tags")} == \
            {c: original[c] for c in ("instruction_id_list", "kwargs", "tags")}
    assert data.train_rows[0]["kwargs"] == by_key(mixed)[data.train_rows[0]["key"]]["kwargs"]  # rows unchanged


def test_nested_objects_flatten_deep_ones_stay_whole_and_non_json_fields_are_named(tmp_path):
    rows = [{"question": f"q{i}", "answer": "1", "extra_info": {"index": i, "tests": [{"input": "1", "output": "2"}]},
             "deep": {"a": {"b": {"c": {"d": {"e": i}}}}}, "blob": b"\x89PNG"} for i in range(3)]
    data = sample([{"path": str(write(tmp_path / "d.parquet", rows))}], total_rows=3)
    row = data.train_rows[0]
    i = row["extra_info.index"]
    assert row["extra_info.tests"] == [{"input": "1", "output": "2"}]
    assert row["deep.a.b.c"] == {"d": {"e": i}}  # four levels flattened, the rest kept as one object
    assert "blob" not in row and data.report.left_out_columns == {"d": ["blob"]}


def test_images_are_left_out_and_the_plan_says_the_model_never_sees_them(tmp_path):
    multimodal = [{"messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:x"}},
                                     {"type": "text", "text": f"What is in picture {i}?"}]},
        {"role": "assistant", "content": "A cat."}]} for i in range(2)]
    verl = [{"prompt": [{"role": "user", "content": "<image>Count the dots."}], "images": [{"bytes": b"\x89PNG"}],
             "reward_model": {"ground_truth": "3"}}]
    paths = [write(tmp_path / "mm.jsonl", multimodal), write(tmp_path / "verl.parquet", verl)]
    config = GRPOPipelineConfig.model_validate({
        "model": {"base_model_name": "m"}, "dataset_settings": {"total_rows": 3},
        "datasets": [{"path": str(p), "reward_funcs": [{"name": "max_length", "max_words": 5}]} for p in paths],
    })
    data = sample([d.model_dump() for d in config.datasets], total_rows=3)
    prompts = sorted(row["prompt"][0]["content"] for row in data.train_rows)
    assert prompts == ["<image>Count the dots.", "What is in picture 0?", "What is in picture 1?"]
    text = describe_data(config, data, resolve_rewards(config))
    assert "mm: layout messages" in text and "2 sampled row(s) carry images (image parts in 'messages')" in text
    assert "1 sampled row(s) carry images (images)" in text and "trains on text only" in text
    assert "left out (values that are not JSON: bytes, dates): images" in text


# ------------------------------------------------------------------------------ which columns rewards read


@register_reward_function("test_reads_tags")
def reads_tags():
    def reward(prompts, completions, answer, tags, level=None, **columns):
        return [float(bool(t)) for t in tags]

    return reward


def test_builtins_declare_their_columns_and_user_rewards_say_them_with_parameters():
    registry = load_reward_modules()
    assert columns_read(registry.get("ifeval_instructions")(kwargs_column="args")) == \
        ColumnsRead(("instruction_id_list", "args"))
    assert columns_read(registry.get("gec_edit_f1")(references_column="corrections")).required == ("corrections",)
    assert columns_read(registry.get("final_answer_match")()).required == ("answer",)
    assert columns_read(registry.get("max_length")(max_words=3)) == ColumnsRead()
    assert columns_read(reads_tags()) == ColumnsRead(("answer", "tags"), ("level",))

    class Callable:
        def __call__(self, prompts, completions, completion_ids, trainer_state=None, source=None, **columns): ...

    assert columns_read(Callable()) == ColumnsRead((), ("source",))


def ifeval_config(path, *rewards):
    return GRPOPipelineConfig.model_validate({
        "model": {"base_model_name": "m"}, "dataset_settings": {"total_rows": 3},
        "datasets": [{"path": str(path), "name": "ifeval", "reward_funcs": list(rewards)}],
    })


def test_a_reward_reading_a_column_no_row_has_is_a_start_up_error(tmp_path):
    rows = [{k: v for k, v in row.items() if k != "kwargs"} | {"tags": None} for row in IFEVAL_ROWS]
    config = ifeval_config(write(tmp_path / "no_kwargs.jsonl", rows), {"name": "ifeval_instructions"})
    data = sample([d.model_dump() for d in config.datasets], total_rows=3)
    with pytest.raises(UserInputError) as error:
        check_columns_read(config, data.train_rows, resolve_rewards(config))
    assert str(error.value) == ("dataset 'ifeval': reward 'ifeval_instructions' reads column 'kwargs', which no row "
                                "of the dataset has; its rows have: answer, dataset_name, source, key, "
                                "instruction_id_list")
    config = ifeval_config(tmp_path / "no_kwargs.jsonl", {"name": "test_reads_tags"})  # tags: None in every row
    with pytest.raises(UserInputError, match="reward 'test_reads_tags' reads column 'tags', which no row"):
        check_columns_read(config, data.train_rows, resolve_rewards(config))


def test_optional_columns_and_present_ones_pass_and_the_plan_lists_them(tmp_path):
    path = write(tmp_path / "ifeval.jsonl", [row | {"tags": ["x"]} for row in IFEVAL_ROWS])
    config = ifeval_config(path, {"name": "ifeval_instructions"}, {"name": "test_reads_tags"})
    data = sample([d.model_dump() for d in config.datasets], total_rows=3)
    plan = resolve_rewards(config)
    check_columns_read(config, data.train_rows, plan)  # `level` is optional: no row has it, no error
    text = describe_data(config, data, plan)
    assert ("  rewards read: ifeval_instructions <- instruction_id_list, kwargs; "
            "test_reads_tags <- answer, tags, level (optional)") in text
    assert "  columns for rewards besides answer: key, instruction_id_list, kwargs, tags" in text


def test_the_dry_run_exits_2_naming_the_reward_and_the_column(tmp_path):
    (tmp_path / "rows.jsonl").write_text("".join(
        json.dumps({k: v for k, v in row.items() if k != "instruction_id_list"}) + "\n" for row in IFEVAL_ROWS))
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({
        "training_parameters": {"output_dir": "run", "num_generations": 2, "per_device_train_batch_size": 4},
        "model": {"base_model_name": "m", "backend": "trl"},
        "datasets": [{"path": "rows.jsonl", "reward_funcs": [{"name": "ifeval_instructions"}]}],
    }))
    assert_user_error(dry_run(tmp_path, config), str(config), "reward 'ifeval_instructions' reads column "
                      "'instruction_id_list', which no row of the dataset has; its rows have: answer, dataset_name, "
                      "source, key, kwargs")


def test_an_eval_path_file_lacking_a_column_its_scoring_rewards_read_fails_the_dry_run(tmp_path):
    """eval_path's rows are scored by the first dataset's rewards: they are checked on their own, since the train
    rows having the column says nothing about them."""
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in IFEVAL_ROWS))
    (tmp_path / "held.jsonl").write_text("".join(
        json.dumps({k: v for k, v in row.items() if k != "kwargs"}) + "\n" for row in IFEVAL_ROWS))
    config = tmp_path / "config.yaml"
    settings = {
        "training_parameters": {"output_dir": "run", "num_generations": 2, "per_device_train_batch_size": 4},
        "model": {"base_model_name": "m", "backend": "trl"}, "dataset_settings": {"total_rows": 3},
        "datasets": [{"path": "rows.jsonl", "reward_funcs": [{"name": "ifeval_instructions"}]}],
    }
    config.write_text(json.dumps(settings))
    assert dry_run(tmp_path, config).returncode == 0
    settings["dataset_settings"].update(eval_path="held.jsonl", eval_rows=3)
    config.write_text(json.dumps(settings))
    assert_user_error(dry_run(tmp_path, config), str(config), "dataset 'rows': reward 'ifeval_instructions' reads "
                      "column 'kwargs', which no row of dataset_settings.eval_path (scored by the dataset's rewards) "
                      "has; its rows have: answer, dataset_name, source, key, instruction_id_list")


def test_doctests():
    import doctest

    from generation.core_pipelines.do_grpo_rl_with_a_prompt.data import json_columns, values
    from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards import columns

    for module in (values, json_columns, columns):
        result = doctest.testmod(module)
        assert result.attempted and not result.failed, module.__name__
