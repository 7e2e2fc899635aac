"""Judge prompts: a YAML list of {role, content} messages with placeholders, checked at start-up.

Placeholders (anything else in `{identifier}` form is a start-up error; other braces, as in JSON
examples, are literal, and `{{` / `}}` write a single brace):
  {input_text}     the last user message of the prompt the policy answered
  {conversation}   the whole prompt as text ("SYSTEM: …\n\nUSER: …")
  {output_text}    the policy's completion (reasoning stripped when cot_end is set), fenced
  {answer}         the reference answer (the dataset's own assistant turn; "" when none)
  {system_prompt}  the prompt's system message ("" when none)

A prompt may end with an assistant message: a prefill (e.g. "<score>") that the judge continues; the
parser reads the prefill followed by the judge's answer. In-process judges (local:) always continue
it; many API servers (llama-cpp-python's among them) start a fresh turn instead, so keep prefills for
local judges.

The policy's text is fenced between `<<<BEGIN RESPONSE>>>` and `<<<END RESPONSE>>>`, and inside every
inserted value the judge's own tags (the score_types names, think, response_k) and the fence markers are
escaped as `&lt;name&gt;`. So a completion that writes "<helpfulness>10</helpfulness>" shows the judge
that text but can never be parsed as the judge's verdict, even when the judge echoes it back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import yaml

from ...config.schema import ConfigError
from .parsing import FENCE_CLOSE, FENCE_OPEN

NODE_DIR = Path(__file__).resolve().parents[2]
PLACEHOLDERS = ("input_text", "conversation", "output_text", "answer", "system_prompt")
ROLES = ("system", "user", "assistant")

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
_FENCE_MARKER = re.compile(r"<<<(?=\s*(?:BEGIN|END) RESPONSE)", re.I)


def resolve_prompt_path(path: str | Path) -> Path:
    """An absolute path as is; a relative one against the node folder first, then the working directory."""
    path = Path(path).expanduser()
    candidates = [path] if path.is_absolute() else [NODE_DIR / path, Path.cwd() / path]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise ConfigError(f"judge prompt file not found: {path} (tried {tried})")


@dataclass(frozen=True)
class JudgePrompt:
    """A loaded, validated judge prompt; `render` fills it for one completion (or one group)."""

    path: Path
    messages: tuple[dict, ...]

    def render(
        self,
        prompt_messages: Sequence[dict],
        output_texts: Sequence[str],
        answer: str,
        tag_names: Iterable[str],
        groupwise: bool = False,
    ) -> list[dict]:
        """The judge's messages. With groupwise=True, `output_texts` are numbered responses to one prompt."""
        escape = _escaper(tag_names)
        if groupwise:
            output_text = "\n\n".join(
                _fence(escape(text), f" {k}") for k, text in enumerate(output_texts, start=1)
            )
        else:
            (single,) = output_texts
            output_text = _fence(escape(single), "")
        values = {
            "input_text": escape(_last_user_message(prompt_messages)),
            "conversation": escape(conversation_text(prompt_messages)),
            "output_text": output_text,
            "answer": escape(answer or ""),
            "system_prompt": escape(
                "\n\n".join(str(m.get("content", "")) for m in prompt_messages if m.get("role") == "system")
            ),
        }
        rendered = [{"role": m["role"], "content": _fill(m["content"], values)} for m in self.messages]
        if groupwise:
            last_user = max(i for i, m in enumerate(rendered) if m["role"] == "user")
            rendered[last_user]["content"] += "\n\n" + groupwise_instruction(len(output_texts), list(tag_names))
        return rendered


def load_prompt(path: str | Path) -> JudgePrompt:
    """Read and check a judge prompt; every problem is a ConfigError naming the file."""
    resolved = resolve_prompt_path(path)
    try:
        data = yaml.safe_load(resolved.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"{resolved}: YAML syntax error: {error}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{resolved}: not UTF-8 text (byte 0x{error.object[error.start]:02x} at offset {error.start})"
                          ) from None
    if not isinstance(data, list) or not data:
        raise ConfigError(f"{resolved}: expected a non-empty list of {{role, content}} messages")
    messages = []
    for index, message in enumerate(data):
        if not isinstance(message, dict) or set(message) != {"role", "content"}:
            raise ConfigError(f"{resolved}: message {index} must have exactly the keys role and content")
        if message["role"] not in ROLES or not isinstance(message["content"], str):
            raise ConfigError(f"{resolved}: message {index}: role must be one of {ROLES} and content a string")
        unknown = sorted(set(placeholders_in(message["content"])) - set(PLACEHOLDERS))
        if unknown:
            raise ConfigError(
                f"{resolved}: message {index}: unknown placeholder(s) {', '.join('{' + u + '}' for u in unknown)}; "
                f"known: {', '.join('{' + p + '}' for p in PLACEHOLDERS)} (write {{{{ and }}}} for literal braces)"
            )
        messages.append({"role": message["role"], "content": message["content"]})
    if not any("output_text" in placeholders_in(m["content"]) for m in messages):
        raise ConfigError(f"{resolved}: no message shows the completion: add {{output_text}} where the judge should read it")
    if not any(m["role"] == "user" for m in messages):
        raise ConfigError(f"{resolved}: the prompt needs at least one user message")
    return JudgePrompt(resolved, tuple(messages))


def missing_tags(prompt: JudgePrompt, names: Iterable[str]) -> list[str]:
    """The criteria whose `<name>` tag no message of the prompt shows: the judge is never asked for them."""
    text = "\n".join(m["content"] for m in prompt.messages)
    return [name for name in names if not re.search(rf"<\s*{re.escape(name)}\s*>", text, re.I)]


def placeholders_in(template: str) -> list[str]:
    return [m.group(1) for m in _PLACEHOLDER.finditer(template) if m.group(1)]


def conversation_text(prompt_messages: Sequence[dict]) -> str:
    """The prompt as the judge reads it: "ROLE: content" paragraphs."""
    return "\n\n".join(f"{str(m.get('role', '')).upper()}: {m.get('content', '')}" for m in prompt_messages)


def groupwise_instruction(count: int, tag_names: list[str]) -> str:
    """Appended to the last user message in judge_mode=groupwise: how to answer for several responses."""
    tags = "\n".join(f"<{name}>…</{name}>" for name in tag_names)
    return (
        f"There are {count} responses above, numbered 1 to {count}, all answering the same prompt. Judge each one "
        "by the criteria above and compare them with each other: a better response must get a higher score "
        "than a worse one. After any reasoning, answer with one block per response, in order, like this:\n"
        f"<response_1>\n{tags}\n</response_1>\n…\n<response_{count}>\n{tags}\n</response_{count}>"
    )


def _fill(template: str, values: dict[str, str]) -> str:
    def replace(match: re.Match) -> str:
        if match.group(1) is None:
            return match.group(0)[0]  # "{{" -> "{", "}}" -> "}"
        return values[match.group(1)]

    return _PLACEHOLDER.sub(replace, template)


def _fence(text: str, label: str) -> str:
    return f"{FENCE_OPEN.format(label=label)}\n{text}\n{FENCE_CLOSE.format(label=label)}"


def _escaper(tag_names: Iterable[str]):
    names = sorted({*tag_names, "think"}, key=len, reverse=True)
    pattern = re.compile(
        r"<(\s*/?\s*(?:" + "|".join(re.escape(n) for n in names) + r"|response_\d+)\b[^<>]*)>", re.I
    )

    def escape(text: str) -> str:
        text = _FENCE_MARKER.sub("&lt;&lt;&lt;", text)
        return pattern.sub(r"&lt;\1&gt;", text)

    return escape


def _last_user_message(prompt_messages: Sequence[dict]) -> str:
    for message in reversed(prompt_messages):
        if message.get("role") == "user":
            return str(message.get("content", ""))
    return str(prompt_messages[-1].get("content", "")) if prompt_messages else ""
