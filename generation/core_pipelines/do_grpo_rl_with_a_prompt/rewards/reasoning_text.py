"""Small text helpers shared by rewards and the judge: reasoning sections and final answers."""

from __future__ import annotations


def passes_cot_format(text: str, cot_start: str | None = None, cot_end: str | None = None) -> bool:
    """True when `text` has the reasoning layout the config asks for.

    With no cot_end the check passes (reasoning is not used). Otherwise the completion must contain exactly
    one cot_end, and cot_start must not appear after the start (it is usually prefilled by the chat
    template, as in the seed's configs); a completion may still open with cot_start itself.
    """
    if not text or not text.strip():
        return False
    if not cot_end:
        return True
    if text.count(cot_end) != 1:
        return False
    if cot_start:
        body = text.lstrip()
        body = body[len(cot_start):] if body.startswith(cot_start) else body
        if cot_start in body:
            return False
    return True


def split_reasoning(text: str, cot_start: str | None = None, cot_end: str | None = None) -> tuple[str, str]:
    """(reasoning, answer) of a completion; with no cot_end, or none in the text, reasoning is ''."""
    if not cot_end or cot_end not in text:
        return "", text.strip()
    reasoning, answer = text.split(cot_end, 1)
    reasoning = reasoning.strip()
    if cot_start and reasoning.startswith(cot_start):
        reasoning = reasoning[len(cot_start):].strip()
    return reasoning, answer.strip()


def strip_reasoning(text: str, cot_start: str | None = None, cot_end: str | None = None) -> str:
    """The completion without its reasoning section (what a reader of the answer sees)."""
    return split_reasoning(text, cot_start, cot_end)[1]
