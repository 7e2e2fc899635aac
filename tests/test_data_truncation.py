"""truncation.py: every dataset_settings.truncation mode, on a word-counting stand-in and on a real tokenizer."""

from __future__ import annotations

import pytest
from test_data import sample, write

from generation.core_pipelines.do_grpo_rl_with_a_prompt.config.schema import DatasetSettings
from generation.core_pipelines.do_grpo_rl_with_a_prompt.data.formats import DataError
from generation.core_pipelines.do_grpo_rl_with_a_prompt.data.truncation import PromptTokens, fit_prompts_to_length

# One token per word plus one per message (a stand-in for the chat template's own tokens).
WORDS = PromptTokens(
    count=lambda messages: sum(len(m["content"].split()) + 1 for m in messages),
    encode=str.split,
    decode=" ".join,
)
LONG_TURN = " ".join(f"w{i}" for i in range(30))


def data_with(tmp_path, *conversations):
    rows = [{"conversations": turns, "k": k} for k, turns in enumerate(conversations)]
    return sample([{"path": str(write(tmp_path / "d.jsonl", rows))}], total_rows=len(rows))


def multi_turn():
    return [{"from": "system", "value": "sys"}, {"from": "human", "value": "a b c d e"},
            {"from": "gpt", "value": "f g h i j"}, {"from": "human", "value": "k l"}, {"from": "gpt", "value": "ok"}]


def single_long_turn():
    return [{"from": "system", "value": "sys"}, {"from": "human", "value": LONG_TURN}, {"from": "gpt", "value": "ok"}]


def fitted_prompts(data, limit, mode):
    fitted = fit_prompts_to_length(data, WORDS, limit, mode)
    return {row["k"]: row["prompt"] for row in fitted.train_rows}, fitted.report.per_dataset["d"]


@pytest.mark.parametrize("mode", ["turns", "left", "right", "middle"])
def test_every_cutting_mode_first_drops_whole_early_turns(tmp_path, mode):
    # sys(2) + user(6) + assistant(6) + user(3) = 17 > 10: the early exchange goes, system and last turn stay
    prompts, entry = fitted_prompts(data_with(tmp_path, multi_turn()), 10, mode)
    assert prompts[0] == [{"role": "system", "content": "sys"}, {"role": "user", "content": "k l"}]
    assert entry["truncated"] == 1 and entry["dropped_overlong"] == 0


def test_turns_drops_a_single_turn_that_is_too_long(tmp_path):
    prompts, entry = fitted_prompts(data_with(tmp_path, single_long_turn()), 10, "turns")
    assert prompts == {} and entry["dropped_overlong"] == 1


@pytest.mark.parametrize("mode, expected", [
    ("left", " ".join(f"w{i}" for i in range(23, 30))),   # keeps the end
    ("right", " ".join(f"w{i}" for i in range(7))),        # keeps the beginning
    ("middle", "w0 w1 w2 w3 w27 w28 w29"),                  # keeps both ends
])
def test_left_right_middle_cut_inside_the_one_remaining_turn(tmp_path, mode, expected):
    # budget 10 = system (2) + user turn (1 + 7 words)
    prompts, entry = fitted_prompts(data_with(tmp_path, single_long_turn()), 10, mode)
    assert prompts[0] == [{"role": "system", "content": "sys"}, {"role": "user", "content": expected}]
    assert WORDS.count(prompts[0]) == 10 and entry["truncated"] == 1


def test_a_cut_that_cannot_keep_one_token_drops_the_row(tmp_path):
    prompts, entry = fitted_prompts(data_with(tmp_path, single_long_turn()), 3, "left")
    assert prompts == {} and entry["dropped_overlong"] == 1


def test_drop_and_error_modes(tmp_path):
    data = data_with(tmp_path, multi_turn(), [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}])
    prompts, entry = fitted_prompts(data, 10, "drop")
    assert list(prompts) == [1] and entry["dropped_overlong"] == 1
    with pytest.raises(DataError, match=r"d\.jsonl:1: the prompt has 17 tokens, over training_parameters\."
                                        r"max_prompt_length 10 \(dataset_settings\.truncation is 'error'\)"):
        fit_prompts_to_length(data, WORDS, 10, "error")
    assert fit_prompts_to_length(data, WORDS, 17, "error").train_rows == data.train_rows


def test_cutting_modes_need_encode_and_decode(tmp_path):
    data = data_with(tmp_path, single_long_turn())
    with pytest.raises(ValueError, match="encode and decode"):
        fit_prompts_to_length(data, WORDS.count, 10, "left")
    assert fit_prompts_to_length(data, WORDS.count, 10, "turns").train_rows == []  # a bare counter is enough


def test_settings_modes_seed_aliases_and_default():
    assert DatasetSettings().effective_truncation == "turns"
    assert DatasetSettings(overlong_prompts="truncate").truncation == "turns"
    assert DatasetSettings(overlong_prompts="drop").truncation == "drop"
    assert DatasetSettings(truncation="left", filter_overlong_prompts=True).effective_truncation == "drop"
    with pytest.raises(ValueError, match="not both"):
        DatasetSettings(overlong_prompts="drop", truncation="left")
    with pytest.raises(ValueError):
        DatasetSettings(truncation="sideways")


@pytest.mark.parametrize("mode", ["left", "right", "middle"])
def test_real_tokenizer_cut_fits_exactly_and_keeps_the_right_end(tmp_path, tiny_model_dir, mode):
    from transformers import AutoTokenizer

    tokens = PromptTokens.from_tokenizer(AutoTokenizer.from_pretrained(tiny_model_dir))
    text = " ".join(["the cat sat on a mat"] * 10) + " one two three"
    data = data_with(tmp_path, [{"from": "system", "value": "be brief"}, {"from": "human", "value": text},
                                {"from": "gpt", "value": "ok"}])
    limit = tokens.count(data.train_rows[0]["prompt"]) - 20
    fitted = fit_prompts_to_length(data, tokens, limit, mode)
    prompt = fitted.train_rows[0]["prompt"]
    assert prompt[0] == {"role": "system", "content": "be brief"}
    assert limit - 2 <= tokens.count(prompt) <= limit  # the most tokens that fit (BPE merges may cost one or two)
    cut = prompt[1]["content"]
    assert len(cut) < len(text)
    if mode == "left":
        assert text.endswith(cut.strip())
    elif mode == "right":
        assert text.startswith(cut.strip())
    else:
        assert cut.startswith("the cat") and cut.endswith("three")
