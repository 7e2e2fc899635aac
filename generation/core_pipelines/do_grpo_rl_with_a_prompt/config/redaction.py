"""Secrets out of everything we write or hand to others: config snapshots, and the command line wandb records."""

from __future__ import annotations

import re
from typing import Any, Iterator, Optional


def redact_secrets(value: Any) -> Any:
    """A copy of a config mapping with secrets (API keys, access tokens, passwords) replaced by '***'."""
    if isinstance(value, dict):
        return {key: ("***" if is_secret_key(key) and item and not isinstance(item, (int, float))
                      else redact_secrets(item)) for key, item in value.items()}
    if isinstance(value, list):
        return [redact_secrets(item) for item in value]
    return value


def redact_argv(argv: list[str]) -> list[str]:
    """`argv` with the values of secret keys in --set / --sweep arguments replaced by '***' (wandb records argv)."""
    redacted = []
    for pieces, flag, text in _setting_arguments(argv):
        if flag and _gives_secret(text):
            masked = f"{text.partition('=')[0]}=***"
            pieces = [flag, masked] if len(pieces) == 2 else [f"{flag}={masked}"]
        redacted.extend(pieces)
    return redacted


def split_secret_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """(`argv` without the --set / --sweep arguments that give a secret key's value, those arguments as
    `--set=KEY=VALUE`): the launcher hands the second part to its children outside their command lines.

    >>> split_secret_args(["--node", "n", "--set", "a.api_key=sk-1", "--set=a.max_steps=5", "--sweep=b.token=x,y"])
    (['--node', 'n', '--set=a.max_steps=5'], ['--set=a.api_key=sk-1', '--sweep=b.token=x,y'])
    """
    public, secret = [], []
    for pieces, flag, text in _setting_arguments(argv):
        if flag and _gives_secret(text):
            secret.append(f"{flag}={text}")
        else:
            public.extend(pieces)
    return public, secret


def _setting_arguments(argv: list[str]) -> Iterator[tuple[list[str], Optional[str], str]]:
    """`argv` in pieces: (the argument(s), the --set / --sweep flag they give or None, its KEY=VALUE text).
    A flag's text is in the same argument (`--set=K=V`) or the next one (`--set K=V`), unless that is a flag too."""
    index = 0
    while index < len(argv):
        flag, eq, text = argv[index].partition("=")
        if flag in _SETTING_FLAGS and not eq and index + 1 < len(argv) and argv[index + 1] not in _SETTING_FLAGS:
            yield argv[index:index + 2], flag, argv[index + 1]
            index += 2
            continue
        yield argv[index:index + 1], (flag if flag in _SETTING_FLAGS and eq else None), text
        index += 1


def _gives_secret(text: str) -> bool:
    """Whether a --set / --sweep text `KEY=VALUE` gives the value of a secret key."""
    dotted, has_value, _ = text.partition("=")
    return bool(has_value) and is_secret_key(dotted.strip().split(".")[-1])


_SETTING_FLAGS = ("--set", "--sweep")
_SECRET_WORDS = {"password", "passwd", "passphrase", "secret", "secrets", "credential", "credentials", "apikey",
                 "authorization", "bearer"}
_NOT_SECRET_TOKENS = {"pad", "eos", "bos", "unk", "sep", "cls", "mask", "special", "prompt", "completion", "image",
                      "audio", "video", "start", "end", "stop", "think", "tool", "generation"}  # tokenizer, prices
_NOT_SECRET_KEYS = {"score", "sort", "cache", "metric", "column", "answer", "prompt", "completion", "label", "text",
                    "group", "dict", "id", "reward", "dataset", "primary", "partition", "lookup", "hash"}  # field names


def is_secret_key(key: Any) -> bool:
    """api_key, apikey, openai_key, hf_token, access_token, *_secret, password, ... but not pad_token,
    price_per_prompt_token, max_tokens, score_key, or where a secret is kept (*_env, *_path, *_file)."""
    snake = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", str(key)).lower()
    words = [word for word in re.split(r"[^a-z0-9]+", snake) if word]
    if not words or words[-1] in ("env", "path", "file", "dir"):
        return False
    if any(word in _SECRET_WORDS for word in words):
        return True
    before = words[-2] if len(words) > 1 else ""
    if words[-1] == "token":
        return before not in _NOT_SECRET_TOKENS
    if words[-1] == "key":
        return before not in _NOT_SECRET_KEYS
    return False
