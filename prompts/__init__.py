"""Prompt templates of ttc-agents, one plain-text file per role.

Templates use ``string.Template`` placeholders (``$question``, ``$steps``, ``$attempts``,
``$solution``) so that LaTeX braces in the text need no escaping.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from string import Template

__all__ = ["PROMPT_NAMES", "load_prompt", "render_prompt"]

PROMPT_NAMES = ("generate", "step_generate", "revise", "judge_step", "judge_answer")


@cache
def load_prompt(name: str) -> Template:
    """Load the template called ``name`` (``step-generate`` and ``step_generate`` both work)."""
    key = name.replace("-", "_")
    if key not in PROMPT_NAMES:
        raise KeyError(f"unknown prompt {name!r}; known prompts: {', '.join(PROMPT_NAMES)}")
    text = resources.files(__name__).joinpath(f"{key}.txt").read_text(encoding="utf-8")
    return Template(text)


def render_prompt(name: str, overrides: dict[str, str] | None = None, /, **values: str) -> str:
    """Fill the template ``name``, or its override from ``overrides`` when one is given.

    Unknown placeholders are an error, so a typo in an override fails loudly.
    """
    template = Template(overrides[name]) if overrides and name in overrides else load_prompt(name)
    return template.substitute(values)
