"""Prompt templates of ttc-agents, one plain-text file per role.

Templates use ``string.Template`` placeholders (``$question``, ``$steps``, ``$attempts``,
``$solution``) so that LaTeX braces in the text need no escaping.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from importlib import resources
from string import Template

__all__ = ["PROMPT_NAMES", "PROMPT_PLACEHOLDERS", "check_prompt_overrides", "load_prompt", "render_prompt"]

PROMPT_NAMES = ("generate", "step_generate", "revise", "judge_step", "judge_answer")

PROMPT_PLACEHOLDERS: Mapping[str, frozenset[str]] = {
    "generate": frozenset({"question"}),
    "step_generate": frozenset({"question", "steps"}),
    "revise": frozenset({"question", "attempts"}),
    "judge_step": frozenset({"question", "steps"}),
    "judge_answer": frozenset({"question", "solution"}),
}
"""The values each prompt is filled with: an override may use these placeholders and no others."""


@cache
def load_prompt(name: str) -> Template:
    """Load the template called ``name`` (``step-generate`` and ``step_generate`` both work)."""
    key = name.replace("-", "_")
    if key not in PROMPT_NAMES:
        raise KeyError(f"unknown prompt {name!r}; known prompts: {', '.join(PROMPT_NAMES)}")
    text = resources.files(__name__).joinpath(f"{key}.txt").read_text(encoding="utf-8")
    return Template(text)


def _known(name: str) -> str:
    key = str(name).replace("-", "_")
    if key not in PROMPT_PLACEHOLDERS:
        raise ValueError(f"unknown prompt {name!r}; known prompts: {', '.join(PROMPT_NAMES)}")
    return key


def check_prompt_overrides(overrides: Mapping[str, str]) -> dict[str, str]:
    """``overrides`` keyed by canonical prompt name; ValueError naming an unknown prompt or placeholder.

    ``step-generate`` is accepted for ``step_generate``. An override may use only the placeholders
    its prompt is filled with (:data:`PROMPT_PLACEHOLDERS`); ``$$`` is a literal dollar sign.
    """
    checked: dict[str, str] = {}
    for name, text in overrides.items():
        key = _known(name)
        if key in checked:
            raise ValueError(f"prompt {key!r} is overridden twice (as {name!r} too)")
        template = Template(text)
        allowed = PROMPT_PLACEHOLDERS[key]
        if not template.is_valid():
            raise ValueError(f"prompt {name!r}: a `$` that starts no placeholder (write `$$` for a dollar sign)")
        unknown = sorted(set(template.get_identifiers()) - allowed)
        if unknown:
            raise ValueError(
                f"prompt {name!r}: unknown placeholder ${unknown[0]}; it is filled with "
                + ", ".join(f"${p}" for p in sorted(allowed))
            )
        checked[key] = text
    return checked


def render_prompt(name: str, overrides: Mapping[str, str] | None = None, /, **values: str) -> str:
    """Fill the template ``name``, or its override from ``overrides`` when one is given.

    Unknown placeholders are an error (``KeyError``), so a typo in an override fails loudly; so is
    an override for a prompt that does not exist (``ValueError``: it would never be used).
    """
    if overrides:
        overrides = {_known(key): text for key, text in overrides.items()}
    template = Template(overrides[name]) if overrides and name in overrides else load_prompt(name)
    return template.substitute(values)
