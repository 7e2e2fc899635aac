"""What of a row's values can reach rewards (JSON values), and where a row carries images.

Columns reach rewards as JSON values (str, int, float, bool, None, lists, str-keyed dicts), so that they
survive the trip through 🤗 datasets into TRL (json_columns.py) unchanged. This node trains
on text: images in a row (an `image` / `images` field, image parts in a message's content list) are not
shown to the model; image_places says where they were, for the plan.
"""

from __future__ import annotations

from typing import Any, Callable

IMAGE_FIELDS = ("image", "images")
IMAGE_PART_TYPES = frozenset({"image", "image_url", "input_image"})
"""Content-part types of images in OpenAI-style messages (skipped: rows are trained as text only)."""


def is_json_value(value: Any, check_text: Callable[[str], None] = lambda text: None) -> bool:
    """Whether `value` is made only of str, int, float, bool, None, lists and str-keyed dicts; `check_text`
    is called on every string in it (and may raise).

    >>> is_json_value([{"num_words": 300, "relation": "at least"}, {}]), is_json_value({"x": b"png"})
    (True, False)
    """
    if value is None or isinstance(value, (bool, int, float)):
        return True
    if isinstance(value, str):
        check_text(value)
        return True
    if isinstance(value, list):
        return all(is_json_value(item, check_text) for item in value)
    if isinstance(value, dict):
        return all(isinstance(key, str) and is_json_value(item, check_text) for key, item in value.items())
    return False


def image_places(row: dict, message_fields: dict[str, Any]) -> tuple[str, ...]:
    """Where a row carries images: its `image` / `images` field (when not empty), and each of
    `message_fields` (name -> value) that is a list of messages with an image content part.

    >>> image_places({"images": ["a.png"]}, {"messages": [{"role": "user", "content": [{"type": "image"}]}]})
    ('images', "image parts in 'messages'")
    """
    places = [name for name in IMAGE_FIELDS if row.get(name) not in (None, "", [], {})]
    for name, turns in message_fields.items():
        if isinstance(turns, list) and any(_has_image_part(turn) for turn in turns):
            places.append(f"image parts in '{name}'")
    return tuple(places)


def _has_image_part(turn: Any) -> bool:
    content = turn.get("content") if isinstance(turn, dict) else None
    return isinstance(content, list) and any(
        isinstance(part, dict) and part.get("type") in IMAGE_PART_TYPES for part in content)
