"""data_hub.py: datasets that are not one file go through 🤗 datasets (load_from_disk / load_dataset).

No hub is reached: the hub code path (datasets.load_dataset(path, name=, split=, revision=, streaming=)) is
exercised with local dataset directories, which load_dataset handles with its own packaged builders.
"""

from __future__ import annotations

import pytest
from test_data import sample, write

from generation.core_pipelines.do_grpo_rl_with_a_prompt.data.formats import DataError

datasets = pytest.importorskip("datasets")


@pytest.fixture(autouse=True)
def _private_datasets_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")


def gsm8k_rows(n: int, split: str = "train") -> list[dict]:
    return [{"question": f"{split} q{i}", "answer": f"step\n#### {i}", "idx": i} for i in range(n)]


def test_a_saved_dataset_directory_is_sampled_by_index(tmp_path):
    directory = tmp_path / "saved"
    datasets.Dataset.from_list(gsm8k_rows(50)).save_to_disk(str(directory))
    data = sample([{"path": str(directory), "name": "g"}], total_rows=10)
    assert len(data.train_rows) == 10 and data.report.per_dataset["g"]["available"] == 50
    for row in data.train_rows:
        assert row["prompt"] == [{"role": "user", "content": f"train q{row['idx']}"}]
        assert row["answer"] == f"step\n#### {row['idx']}"
        assert row["source"] == f"{directory}[train]:#{row['idx']}"
    assert data.report.layouts["g"].startswith("layout question/answer (auto-detected)")
    again = sample([{"path": str(directory), "name": "g"}], total_rows=10)
    assert again.train_rows == data.train_rows


def test_a_saved_dataset_dict_picks_the_split(tmp_path):
    directory = tmp_path / "dict"
    datasets.DatasetDict({
        "train": datasets.Dataset.from_list(gsm8k_rows(5)),
        "test": datasets.Dataset.from_list(gsm8k_rows(3, "test")),
    }).save_to_disk(str(directory))
    rows = sample([{"path": str(directory), "split": "test"}], total_rows=10).train_rows
    assert sorted(row["prompt"][0]["content"] for row in rows) == ["test q0", "test q1", "test q2"]
    with pytest.raises(DataError, match=r"no split 'validation' \(it has train, test\)"):
        sample([{"path": str(directory), "split": "validation"}], total_rows=1)


def verl_rows(n: int) -> list[dict]:
    return [{"prompt": [{"role": "user", "content": f"q{i}"}], "reward_model": {"ground_truth": str(i)},
             "extra_info": {"index": i}} for i in range(n)]


def test_a_directory_of_parquet_files_goes_through_load_dataset(tmp_path):
    directory = tmp_path / "verl_data"
    (directory / "data").mkdir(parents=True)
    write(directory / "data" / "train-00000-of-00001.parquet", verl_rows(40))
    write(directory / "data" / "test-00000-of-00001.parquet", verl_rows(4))
    data = sample([{"path": str(directory), "name": "v"}], total_rows=8)
    assert len(data.train_rows) == 8 and data.report.per_dataset["v"]["available"] == 40
    for row in data.train_rows:
        assert row["answer"] == str(row["extra_info.index"]) and row["prompt"][0]["content"] == f"q{row['answer']}"
    assert data.report.layouts["v"].startswith("layout verl (auto-detected)")
    test_rows = sample([{"path": str(directory), "name": "v", "split": "test"}], total_rows=8).train_rows
    assert len(test_rows) == 4


def test_streaming_draws_a_seeded_shuffle_without_knowing_the_length(tmp_path):
    directory = tmp_path / "stream"
    directory.mkdir()
    write(directory / "train.jsonl", verl_rows(300))  # JSON: a Parquet stream waits 5 s when it closes
    spec = [{"path": str(directory), "name": "s", "streaming": True}]
    first, again, other = (sample(spec, seed=seed, total_rows=20) for seed in (1, 1, 2))
    assert len(first.train_rows) == 20 and first.report.per_dataset["s"]["available"] is None
    assert [r["source"] for r in first.train_rows] == [r["source"] for r in again.train_rows]
    assert first.train_rows[0]["source"].startswith(f"{directory}[train]:stream#")
    assert {r["answer"] for r in first.train_rows} != {r["answer"] for r in other.train_rows}
    assert {r["answer"] for r in first.train_rows} != {str(i) for i in range(20)}  # not just the first rows
    capped = sample(spec, total_rows=400)
    assert len(capped.train_rows) == 300 and capped.report.per_dataset["s"]["capped"] is True


def test_streaming_skips_bad_rows_and_draws_replacements(tmp_path):
    directory = tmp_path / "stream_bad"
    directory.mkdir()
    rows = gsm8k_rows(30)
    for i in (3, 7, 11):
        rows[i]["question"] = "  "
    write(directory / "train.jsonl", rows)
    data = sample([{"path": str(directory), "name": "b", "streaming": True}], total_rows=27)
    assert len(data.train_rows) == 27 and data.report.per_dataset["b"]["skipped_bad"] == 3
    examples = data.report.bad_row_examples
    assert all("stream#" in example and "empty text in 'question'" in example for example in examples)


def test_a_broken_file_inside_a_stream_is_a_data_error(tmp_path):
    directory = tmp_path / "stream_broken"
    directory.mkdir()
    (directory / "train.jsonl").write_text('{"question": "q", "answer": "a"}\n{broken\n')
    with pytest.raises(DataError, match=r"stream_broken\[train\]: reading the stream failed near row"):
        sample([{"path": str(directory), "streaming": True}], total_rows=5)


def test_a_hub_id_that_is_not_cached_while_offline_names_the_dataset(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError) as error:
        sample([{"path": "nobody-here/no-such-dataset", "subset": "main"}], total_rows=1)
    message = str(error.value)
    assert message.startswith("nobody-here/no-such-dataset[main/train]: cannot load the dataset: ")
    assert "HF_DATASETS_OFFLINE=1" in message and "\n" not in message


def test_a_missing_file_is_not_mistaken_for_a_hub_id(tmp_path):
    for path in ("missing.jsonl", "./data", str(tmp_path / "nothing")):
        with pytest.raises(DataError, match="file not found"):
            sample([{"path": path}], base_dir=tmp_path, total_rows=1)


def test_hub_settings_on_a_file_are_refused(tmp_path):
    path = write(tmp_path / "d.jsonl", gsm8k_rows(2))
    with pytest.raises(DataError, match=r"d\.jsonl: subset, split apply to hub datasets and dataset directories"):
        sample([{"path": str(path), "subset": "main", "split": "test"}], total_rows=1)


def test_split_subset_and_revision_reach_load_dataset(tmp_path, monkeypatch):
    directory = tmp_path / "plain"
    directory.mkdir()
    write(directory / "train.jsonl", gsm8k_rows(3))
    calls = []
    real = datasets.load_dataset

    def recording(*args, **kwargs):  # the real loader, its arguments recorded
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", recording)
    rows = sample([{"path": str(directory), "revision": "v1.0"}], total_rows=3).train_rows
    assert len(rows) == 3
    assert calls == [((str(directory),), {"name": None, "split": "train", "revision": "v1.0", "streaming": False})]
