"""training_parameters.chat_template: a name, a file or Jinja text, resolved to the template text at config time.

- 'chatml': the ChatML template (model_loading.CHATML_TEMPLATE), kept as the name;
- a name of a template TRL ships in trl/chat_templates/ (e.g. 'llama3', 'qwen2_5', 'gemma'): its text;
- a path to an existing file (relative to the working directory): the file's text;
- anything else must be Jinja text itself.
Whatever it resolves to must parse as Jinja and read `messages`: a template that never does renders every
prompt to the same constant string, and the run would train on that without a word. Torch-free (jinja2, as
transformers renders templates, and a file lookup).
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Optional

import jinja2
from jinja2 import meta, nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from generation.registry import did_you_mean

CHATML = "chatml"


@lru_cache(maxsize=1)
def trl_template_names() -> dict[str, Path]:
    """Name -> file of the chat templates the installed TRL ships (its *_training variants left out)."""
    spec = importlib.util.find_spec("trl")
    if spec is None or not spec.submodule_search_locations:
        return {}
    folder = Path(spec.submodule_search_locations[0]) / "chat_templates"
    return {p.stem: p for p in sorted(folder.glob("*.jinja")) if not p.stem.endswith("_training")}


def resolve_chat_template(value: Optional[str]) -> Optional[str]:
    """The template text for a chat_template value ('chatml' stays a name); ValueError says what is wrong."""
    if value is None or value.strip().lower() == CHATML:
        return value
    text, origin = _template_text(value)
    check_template(text, origin)
    return text


def _template_text(value: str) -> tuple[str, str]:
    stripped = value.strip()
    if "{" in stripped:
        return value, "the template"
    names = trl_template_names()
    if stripped in names:
        return names[stripped].read_text(encoding="utf-8"), f"TRL's template '{stripped}'"
    path = Path(stripped).expanduser()
    if path.is_file():
        try:
            return path.read_text(encoding="utf-8"), str(path)
        except (OSError, UnicodeDecodeError) as error:
            raise ValueError(f"cannot read the template file {path}: {error}") from None
    if "/" in stripped or "\\" in stripped or path.suffix in (".jinja", ".j2", ".txt", ".tmpl"):
        raise ValueError(f"template file not found: {path} (a relative path starts at the working directory, "
                         f"{Path.cwd()})")
    known = [CHATML, *names]
    raise ValueError(f"'{stripped}' is not a template file, a known template name{did_you_mean(stripped, known)} or "
                     f"Jinja text; known names: {', '.join(known)}")


def check_template(text: str, origin: str) -> None:
    """`text` must parse as Jinja and use the `messages` variable."""
    environment = ImmutableSandboxedEnvironment(extensions=[loopcontrols, _GenerationTags])
    try:
        variables = meta.find_undeclared_variables(environment.parse(text))
    except jinja2.TemplateSyntaxError as error:
        raise ValueError(f"{origin} is not valid Jinja (line {error.lineno}: {error.message})") from None
    if "messages" not in variables:
        raise ValueError(f"{origin} never reads `messages`, so every prompt would render to the same text: a chat "
                         "template loops over the conversation, e.g. {% for message in messages %}...{% endfor %}")


class _GenerationTags(Extension):
    """Accept transformers' `{% generation %}...{% endgeneration %}` blocks (assistant masks) when parsing."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.Scope(body, lineno=lineno)
