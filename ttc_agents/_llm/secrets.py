"""Masking configured secrets (API keys) in every message the library writes.

A server may echo the key it was sent in an error body ("Incorrect API key provided: sk-..."), and
LiteLLM copies that body into its exception's message, its ``args``, the chained OpenAI exception and
their attributes. The gateway masks every exception a provider call raises in place
(:func:`mask_exception`), so error records, ``ttc solve``'s error line and the server's errors carry
masked text; :func:`mask_secrets` is the helper for any other text.

Secrets are the ``api_key`` of every :class:`~ttc_agents.ModelSpec` the gateway has sent (registered
with :func:`register_secret`) and the values of environment variables LiteLLM reads keys from
(names ending in ``_API_KEY``, ``_TOKEN``, ``_SECRET``, ``_SECRET_KEY``, ``_ACCESS_KEY``, ``_PASSWORD``,
or containing ``API_KEY``), read when masking so that a key set later is masked too. Values shorter
than :data:`MIN_SECRET_LENGTH` characters are not treated as secrets (``"none"``, ``"x"``: masking them
would garble ordinary words).
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Iterable
from typing import Any, Final

from pydantic import SecretStr

__all__ = ["MASK", "MIN_SECRET_LENGTH", "known_secrets", "mask_exception", "mask_secrets", "register_secret"]

MASK: Final = "***"
"""What a secret is replaced with."""

MIN_SECRET_LENGTH: Final = 8

_ENV_NAME: Final = re.compile(r"(API_?KEY|_TOKEN$|_SECRET$|_SECRET_KEY$|_ACCESS_KEY$|_PASSWORD$)", re.IGNORECASE)
_registered: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str | SecretStr | None) -> None:
    """Mask ``value`` from now on wherever :func:`mask_secrets` runs (None and short values are ignored)."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if value and len(value) >= MIN_SECRET_LENGTH:
        with _lock:
            _registered.add(value)


def known_secrets(extra: Iterable[str | SecretStr | None] = ()) -> list[str]:
    """Registered secrets, keys found in the environment and ``extra``; longest first."""
    found = set(_registered)
    for name, value in os.environ.items():
        if value and len(value) >= MIN_SECRET_LENGTH and _ENV_NAME.search(name):
            found.add(value)
    for item in extra:
        text = item.get_secret_value() if isinstance(item, SecretStr) else item
        if text and len(text) >= MIN_SECRET_LENGTH:
            found.add(text)
    return sorted(found, key=len, reverse=True)  # a key that contains another is masked whole


def mask_secrets(text: str, extra: Iterable[str | SecretStr | None] = ()) -> str:
    """``text`` with every known secret (see the module docstring) and ``extra`` replaced by ``***``."""
    for secret in known_secrets(extra):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def _mask_value(value: Any, secrets: list[str], depth: int = 0) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, MASK)
        return value
    if depth > 6:
        return value
    if isinstance(value, dict):
        for key, item in list(value.items()):
            value[key] = _mask_value(item, secrets, depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            value[i] = _mask_value(item, secrets, depth + 1)
    elif isinstance(value, tuple):
        items = tuple(_mask_value(item, secrets, depth + 1) for item in value)
        if all(new is old for new, old in zip(items, value, strict=True)):
            return value  # unchanged: keep it, type and all (aiohttp's ConnectionKey is a NamedTuple)
        try:
            return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
        except TypeError:
            return items
    return value


def mask_exception(exc: BaseException, extra: Iterable[str | SecretStr | None] = ()) -> BaseException:
    """Mask known secrets in ``exc`` in place: its ``args``, its string (and dict, list, tuple)
    attributes, and likewise every exception in its ``__cause__`` / ``__context__`` chain and
    exception group. Returns ``exc``. An attribute that cannot be set is left as it is."""
    secrets = known_secrets(extra)
    if not secrets:
        return exc
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        with contextlib.suppress(AttributeError, TypeError):
            current.args = tuple(_mask_value(arg, secrets) for arg in current.args)
        for name, value in list(getattr(current, "__dict__", {}).items()):
            if isinstance(value, str | dict | list | tuple):
                with contextlib.suppress(AttributeError, TypeError):
                    setattr(current, name, _mask_value(value, secrets))
            elif isinstance(value, BaseException):
                pending.append(value)
        notes = getattr(current, "__notes__", None)
        if isinstance(notes, list):
            notes[:] = [_mask_value(note, secrets) for note in notes]
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                pending.append(linked)
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
    return exc
