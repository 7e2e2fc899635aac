"""Which fields of a row are the prompt, the reference answer and the system message, and the rest as columns.

A *layout* maps a row's fields onto a conversation. It is detected per dataset from the keys of its first
rows (first match wins), and any of `prompt_column`, `answer_column`, `system_column`, `prompt_template`
set on the dataset overrides that part of it:

| layout            | recognised by                  | prompt                 | reference answer           |
|-------------------|--------------------------------|------------------------|----------------------------|
| sharegpt          | `conversations`                | the turns before the target assistant turn       | that turn |
| messages          | `messages`                     | (same, OpenAI roles)   | (same)                     |
| verl              | `prompt` + `reward_model`      | `prompt` (messages)    | `reward_model.ground_truth`|
| prompt/completion | `prompt`                       | `prompt` (text or messages) | `completion`, else `answer` |
| question/answer   | `question` + `answer` (GSM8K)  | `question`             | `answer`                   |
| problem/solution  | `problem` + `answer`/`solution`| `problem`              | `answer`, else `solution`  |
| alpaca            | `instruction` + `output`       | `instruction` + "\\n\\n" + `input` | `output`       |

Column names are dotted paths into nested objects (`reward_model.ground_truth`). `prompt_template`
("Solve: {question}") builds the user turn from fields (dotted names allowed); a field it names that a row
lacks makes that row bad. The reference answer reaches rewards as `answer` and, as TRL passes every column,
also under its own top-level field name (`solution`, `output`; not `completion`, which TRL reads itself). Every other field reaches the rewards as a column: nested objects are flattened
to dotted names (`extra_info.index`; an object nested deeper than MAX_FLATTEN_DEPTH levels is one column
holding that object), scalars, lists and lists of objects as they are (JSON values: str, int, float, bool,
None, list, dict). A field holding anything else (bytes, a date from Parquet) is left out and named in the
plan (Conversation.left_out). A field whose name TRL or this node passes to rewards itself (`prompts`,
`completions`, `answer`, ...) is renamed `row_<name>`. Text that is not valid Unicode (a lone surrogate from
a JSON escape), anywhere in a column's value, makes the row bad.

Images: this node trains on text. A row with an `image` / `images` field, or with image parts in its
messages' content lists (OpenAI `image_url`, `image`, `input_image`), is read as its text alone; the
image parts are skipped and Conversation.images says where images were, so the plan can say so.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Iterable, Optional

from .values import IMAGE_PART_TYPES, image_places, is_json_value

ROLES = {
    "human": "user", "user": "user",
    "gpt": "assistant", "assistant": "assistant", "model": "assistant",
    "system": "system",
}
BASE_COLUMNS = ("prompt", "answer", "dataset_name", "source")
TRL_REWARD_ARGUMENTS = frozenset({
    "prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric", "environments",
})
"""Names TRL's GRPOTrainer passes to reward functions itself (trl/trainer/grpo_trainer.py _calculate_rewards)."""
RENAMED_PREFIX = "row_"
RESERVED_NAMES = frozenset(BASE_COLUMNS) | TRL_REWARD_ARGUMENTS | {"completion", "image", "images"}
"""Row fields renamed to row_<name>: ours, TRL's reward arguments, and columns TRL reads as inputs itself."""
MAX_FLATTEN_DEPTH = 4
_MISSING = object()


class BadRow(ValueError):
    """One row that cannot be used; the message is the reason shown after 'file:line: '."""


@dataclass(frozen=True)
class Layout:
    """How one dataset's rows become conversations; `configured` names the parts the config set."""

    name: str
    conversation_key: Optional[str] = None  # sharegpt / messages: the list of turns
    prompt: tuple[str, ...] = ()  # fields joined by a blank line into the user turn (or one messages field)
    answer: tuple[str, ...] = ()  # the first of these that a row has is the reference answer
    answer_required: bool = True
    system: Optional[str] = None
    template: Optional[str] = None
    configured: frozenset[str] = field(default_factory=frozenset)

    def describe(self) -> str:
        """One line for the plan: the layout and where the prompt / answer / system come from."""
        def origin(part: str) -> str:
            return "configured" if part in self.configured else "auto-detected"

        if self.conversation_key:
            return f"layout {self.name} (auto-detected): turns from '{self.conversation_key}'"
        prompt = f"template {self.template!r}" if self.template else " + ".join(f"'{p}'" for p in self.prompt)
        parts = [f"prompt <- {prompt} ({origin('prompt')})"]
        answer = " or ".join(f"'{a}'" for a in self.answer) or "none"
        parts.append(f"answer <- {answer} ({origin('answer')})")
        if self.system:
            parts.append(f"system <- '{self.system}' ({origin('system')})")
        kind = "configured" if self.configured else "auto-detected"
        return f"layout {self.name} ({kind}): " + ", ".join(parts)

    @cached_property
    def consumed(self) -> frozenset[str]:
        """The fields this layout reads (they are not passed on as columns)."""
        used = set(self.prompt) | set(self.answer) | ({self.system} if self.system else set())
        if self.conversation_key:
            used.add(self.conversation_key)
        if self.template:
            used |= set(template_fields(self.template))
        return frozenset(used)


LAYOUTS = (
    (("conversations",), Layout("sharegpt", conversation_key="conversations")),
    (("messages",), Layout("messages", conversation_key="messages")),
    (("prompt", "reward_model"), Layout("verl", prompt=("prompt",), answer=("reward_model.ground_truth",))),
    (("prompt",), Layout("prompt/completion", prompt=("prompt",), answer=("completion", "answer"),
                         answer_required=False)),
    (("question", "answer"), Layout("question/answer", prompt=("question",), answer=("answer",))),
    (("problem", "answer"), Layout("problem/solution", prompt=("problem",), answer=("answer", "solution"))),
    (("problem", "solution"), Layout("problem/solution", prompt=("problem",), answer=("solution",))),
    (("instruction", "output"), Layout("alpaca", prompt=("instruction", "input"), answer=("output",))),
)


def detect_layout(first_rows: Iterable[Any], dataset: Any, label: str) -> Layout:
    """The dataset's layout: detected from the keys of its first rows, then its column settings applied.

    `dataset` is a DatasetConfig (prompt_column, answer_column, system_column, prompt_template). Raises
    LayoutError when no layout fits, saying which keys the first rows have.
    """
    seen: set[str] = set()
    for row in first_rows:
        if isinstance(row, dict):
            seen.update(row)
    detected = next((layout for keys, layout in LAYOUTS if all(key in seen for key in keys)), None)
    settings = {part: getattr(dataset, f"{part}_column", None) for part in ("prompt", "answer", "system")}
    template = getattr(dataset, "prompt_template", None)
    if not (template or any(settings.values())):
        if detected is None:
            found = f"the first rows have the keys {sorted(seen)}" if seen else "no readable row among the first rows"
            raise LayoutError(
                f"{label}: unknown row format: {found}; expected 'conversations' (ShareGPT), 'messages' (OpenAI), "
                "'prompt' (+ 'completion'), question/answer, problem/solution, instruction/output, "
                "or set the dataset's prompt_column (and answer_column) or prompt_template"
            )
        return detected
    if detected is not None and detected.conversation_key and not (template or settings["prompt"]):
        raise LayoutError(
            f"{label}: rows with '{detected.conversation_key}' take their prompt and answer from the turns; "
            "answer_column / system_column need prompt_column or prompt_template"
        )
    columns_only = detected is not None and not detected.conversation_key
    base = detected if columns_only else Layout("columns", answer_required=False)
    configured = {part for part, value in settings.items() if value}
    changes: dict[str, Any] = {}
    if template:
        changes.update(template=template, prompt=())
        configured.add("prompt")
    elif settings["prompt"]:
        changes.update(prompt=(settings["prompt"],))
    if settings["answer"]:
        changes.update(answer=(settings["answer"],), answer_required=True)
    if settings["system"]:
        changes.update(system=settings["system"])
    return replace(base, configured=frozenset(configured), **changes)


class LayoutError(ValueError):
    """No layout fits the dataset's first rows (the caller turns it into a DataError)."""


# ------------------------------------------------------------------------------------------ one row


@dataclass
class Conversation:
    """A checked row: its messages, the positions an answer may be taken from, and its extra columns."""

    messages: list[dict[str, str]]
    targets: list[int]
    extras: dict[str, Any] = field(default_factory=dict)
    images: tuple[str, ...] = ()  # where the row carries images (left out: training is text only)
    left_out: tuple[str, ...] = ()  # fields left out because their values are not JSON values


def to_conversation(row: Any, layout: Layout) -> Conversation:
    """Check one raw row and return its Conversation; BadRow with the reason otherwise."""
    if not isinstance(row, dict):
        raise BadRow(f"row is a JSON {type(row).__name__}, not an object")
    consumed = layout.consumed
    if layout.conversation_key:
        conversation = _turns(row, layout.conversation_key)
    else:
        conversation, answer_path = _columns(row, layout)
        consumed -= set(layout.answer) - {answer_path}  # an answer candidate not used stays a column
        if answer_path and answer_path not in RESERVED_NAMES and "." not in answer_path:
            consumed -= {answer_path}  # the answer's own field stays one too (TRL's accuracy_reward reads `solution`)
    for message in conversation.messages:
        check_unicode(message["content"], f"{message['role']} text")
    left_out: list[str] = []
    conversation.extras = extra_columns(row, consumed, left_out)
    conversation.left_out = tuple(left_out)
    fields = [layout.conversation_key] if layout.conversation_key else list(layout.prompt)
    conversation.images = image_places(row, {name: get_path(row, name) for name in fields})
    return conversation


def get_path(row: dict, path: str) -> Any:
    """The value at a dotted path (a key that itself contains the dots wins); _MISSING when absent."""
    if path in row:
        return row[path]
    value: Any = row
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def is_missing(value: Any) -> bool:
    return value is _MISSING


def extra_columns(row: dict, consumed: "set[str] | frozenset[str]", left_out: Optional[list] = None
                  ) -> dict[str, Any]:
    """The row's other fields as columns, in row order: nested objects flattened to dotted names (up to
    MAX_FLATTEN_DEPTH levels, deeper ones kept whole), lists kept as they are, reserved names renamed
    row_<name>. Fields whose values are not JSON values are appended to `left_out` instead."""
    extras: dict[str, Any] = {}

    def add(mapping: dict, prefix: str, depth: int) -> None:
        for key, value in mapping.items():
            name = f"{prefix}{key}"
            if name in consumed:
                continue
            if isinstance(value, dict) and depth + 1 < MAX_FLATTEN_DEPTH:
                add(value, f"{name}.", depth + 1)
                continue
            if not is_json_value(value, lambda text: check_unicode(text, f"column '{name}'")):
                if left_out is not None:
                    left_out.append(name)
                continue
            if name in RESERVED_NAMES:
                name = RENAMED_PREFIX + name
                if name in row:
                    raise BadRow(f"column '{name[len(RENAMED_PREFIX):]}' must be renamed {name} (TRL or this "
                                 f"node passes a reward argument of that name), but the row also has '{name}'")
            extras[name] = value

    add(row, "", 0)
    return extras


def check_unicode(text: str, where: str) -> None:
    """BadRow when `text` cannot be encoded as UTF-8 (a lone surrogate such as "\\ud800" from JSON)."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as error:
            raise BadRow(f"{where} is not valid Unicode (lone surrogate {text[error.start]!r} "
                         f"at character {error.start})") from None


# ------------------------------------------------------------------------------------- conversations


def _turns(row: dict, key: str) -> Conversation:
    turns = row.get(key)
    if turns is None:
        raise BadRow(f"missing '{key}'")
    if not isinstance(turns, list):
        raise BadRow(f"'{key}' is a {type(turns).__name__}, not a list")
    messages = messages_from(turns)
    targets, seen_user = [], False
    for index, message in enumerate(messages):
        seen_user = seen_user or message["role"] == "user"
        if seen_user and message["role"] == "assistant":
            targets.append(index)
    if not targets:
        has_assistant = any(message["role"] == "assistant" for message in messages)
        raise BadRow("no assistant turn" + (" after a user turn" if has_assistant else ""))
    return Conversation(messages, targets)


def _columns(row: dict, layout: Layout) -> tuple[Conversation, Optional[str]]:
    if layout.template:
        messages = [{"role": "user", "content": render_template(layout.template, row)}]
    else:
        messages = _prompt_messages(row, layout.prompt)
    if layout.system:
        system = get_path(row, layout.system)
        if not isinstance(system, str):
            raise BadRow(f"missing '{layout.system}'" if is_missing(system) else f"'{layout.system}' is not text")
        if system.strip():
            if messages[0]["role"] == "system":
                messages[0] = {"role": "system", "content": f"{system}\n\n{messages[0]['content']}"}
            else:
                messages.insert(0, {"role": "system", "content": system})
    answer, answer_path = _answer(row, layout)
    messages.append({"role": "assistant", "content": answer})
    return Conversation(messages, [len(messages) - 1]), answer_path


def _prompt_messages(row: dict, paths: tuple[str, ...]) -> list[dict[str, str]]:
    first = get_path(row, paths[0])
    if is_missing(first) or first is None:
        raise BadRow(f"missing '{paths[0]}'")
    if isinstance(first, list):
        messages = messages_from(first)
        if not messages:
            raise BadRow(f"'{paths[0]}' has no messages")
        if messages[-1]["role"] == "assistant":
            raise BadRow(f"'{paths[0]}' ends with an assistant message (the prompt should end with the user's turn)")
        return messages
    texts = []
    for path in paths:
        value = get_path(row, path)
        if is_missing(value) or value is None:
            continue
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise BadRow(f"'{path}' is a {type(value).__name__}, not text")
        if str(value).strip():
            texts.append(str(value))
    if not texts:
        raise BadRow(f"empty text in '{paths[0]}'")
    return [{"role": "user", "content": "\n\n".join(texts)}]


def _answer(row: dict, layout: Layout) -> tuple[str, Optional[str]]:
    """The reference answer and the field it came from (None: no answer)."""
    for path in layout.answer:
        value = get_path(row, path)
        if is_missing(value) or value is None:
            continue
        if isinstance(value, list):  # a completion given as messages
            said = [m["content"] for m in messages_from(value) if m["role"] == "assistant"]
            if not said:
                raise BadRow(f"'{path}' has no assistant message")
            return said[0], path
        if isinstance(value, (str, int, float, bool)):
            return str(value), path
        raise BadRow(f"'{path}' is a {type(value).__name__}")
    if layout.answer_required and layout.answer:
        raise BadRow(f"missing '{layout.answer[0]}'")
    return "", None


def messages_from(turns: list) -> list[dict[str, str]]:
    """Normalized {role, content} messages; empty system messages are left out."""
    messages = []
    for number, turn in enumerate(turns, start=1):
        if not isinstance(turn, dict):
            raise BadRow(f"message {number} is a {type(turn).__name__}, not an object")
        raw_role = turn.get("from")
        if raw_role is None:  # Parquet structs carry every key, some null
            raw_role = turn.get("role")
        role = ROLES.get(raw_role) or ROLES.get(raw_role.lower()) if isinstance(raw_role, str) else None
        if role is None:
            raise BadRow(f"unknown role {raw_role!r} in message {number}")
        content = turn.get("value")
        text = _text(turn.get("content") if content is None else content)
        if text is None:
            raise BadRow(f"message {number} ({role}) has no text")
        if not text.strip():
            if role == "system":
                continue
            raise BadRow(f"empty text in message {number} ({role})")
        messages.append({"role": role, "content": text})
    return messages


def _text(content: Any) -> Optional[str]:
    """A message's text: a string, or the text parts of an OpenAI content list joined (image parts are
    skipped; any other kind of part makes it None)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) for p in content):
        kinds = {p.get("type") for p in content}
        if kinds <= {"text"} | IMAGE_PART_TYPES and ("text" in kinds or not content):
            return "".join(str(p.get("text", "")) for p in content if p.get("type") == "text")
    return None


# ------------------------------------------------------------------------------------------ templates


def template_fields(template: str) -> list[str]:
    """The field names a prompt_template uses; ValueError for a malformed template."""
    names = []
    for _, name, _, _ in string.Formatter().parse(template):
        if name is None:
            continue
        if not name or name.isdigit():
            raise ValueError("every {} must name a field, e.g. {question}")
        if "[" in name or "]" in name:
            raise ValueError(f"{{{name}}}: use dotted names for nested fields (reward_model.ground_truth), not [...]")
        names.append(name)
    return names


def render_template(template: str, row: dict) -> str:
    """The template with each {field} (dotted paths allowed) filled from the row; BadRow for a missing field."""
    out = []
    for literal, name, spec, conversion in string.Formatter().parse(template):
        out.append(literal)
        if name is None:
            continue
        value = get_path(row, name)
        if is_missing(value):
            raise BadRow(f"prompt_template names {{{name}}}, which this row lacks")
        if conversion:
            value = {"r": repr, "s": str, "a": ascii}[conversion](value)
        out.append(format(value, spec or ""))
    text = "".join(out)
    if not text.strip():
        raise BadRow("prompt_template gives an empty prompt")
    return text
