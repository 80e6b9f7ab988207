"""Model configuration errors: a model that cannot answer as configured fails at once, in one line.

A new user's first mistakes (no API key, a provider LiteLLM does not know, a model name the provider
does not know, a server that is not running at ``api_base``) used to come back as LiteLLM errors that
look transient (LiteLLM reports a missing OpenAI key as an *InternalServerError*), which the gateway
retried for ~10 s before printing LiteLLM's message. They now fail at the first attempt (or before
it), never retried, with one line naming the model and what to set: :class:`ModelConfigError` for a
missing key, an unknown provider and an ``api_base`` nothing listens at; LiteLLM's own
``NotFoundError`` / ``AuthenticationError``, with that line appended, for a 404 or 401 (below).

Two places find them:

* before a call (:func:`check_model_config`), for a name LiteLLM routes to a hosted provider with no
  ``api_base`` and no ``api_key`` of its own: a provider LiteLLM does not know, or a provider of
  :data:`PROVIDER_KEYS` whose key is in none of its environment variables. Names with a resolver
  (``local/...``), custom providers (``scripted/...``, ``ttc/...``), router groups and every spec with
  an explicit ``api_base`` or ``api_key`` are never checked. The check runs only when a request is
  about to be sent (a replayed recording needs no key) and costs microseconds: a prefix lookup and
  environment reads. It does not use ``litellm.validate_environment``: that one misses the alternative
  names LiteLLM reads (``CO_API_KEY``, ``OR_API_KEY``, ``ANTHROPIC_AUTH_TOKEN``), and it resolves the
  provider with ``get_llm_provider``, which for some providers (``github_copilot/``, ``chatgpt/``)
  starts a device-code login over the network. ``get_llm_provider`` is called only for names whose
  prefix is no known provider (``gpt-4o-mini``, ``foo/bar``): exactly what ``acompletion`` calls first.
* after a failed attempt (:func:`config_error_of`), for everything else: a missing-key error from the
  provider's client (OpenAI's says *InternalServerError*, Gemini's *APIConnectionError*), LiteLLM's
  "LLM Provider NOT provided", and a refused connection to an ``api_base``.

A 401 (a refused key) and a 404 (a model the server does not know, or a wrong ``api_base`` path) were
never retried; they keep their LiteLLM types (``AuthenticationError``, ``NotFoundError``: callers and
batch records name them) and get the model and what to check appended to their one-line message
(:func:`add_status_hint`). A model name is not checked against the provider's list before the call:
fine-tunes and new models are not in LiteLLM's offline map, and the first answer says it at once.

A refused connection is a configuration error only while nothing has answered at that ``api_base``
in this gateway: for a new user it means "no server there" (a wrong port, a server not started), and
retrying cannot help; once a call to it has succeeded, a refusal means the server is restarting, and
the usual retries (backoff, 5 attempts) apply. An unresolvable host stays retryable (offline DNS says
"temporary failure", which may be true).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sys
from collections.abc import Iterable, Iterator
from typing import Any, Final

from ttc_agents._llm.secrets import mask_secrets

__all__ = [
    "PROVIDER_KEYS",
    "ModelConfigError",
    "add_status_hint",
    "check_model_config",
    "config_error_of",
    "is_connection_refused",
    "openai_key_missing",
]

PROVIDER_KEYS: Final[dict[str, tuple[str, ...]]] = {
    "openai": ("OPENAI_API_KEY",),
    "anthropic": ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"),
    "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    "groq": ("GROQ_API_KEY",),
    "mistral": ("MISTRAL_API_KEY",),
    "deepseek": ("DEEPSEEK_API_KEY",),
    "cohere": ("COHERE_API_KEY", "CO_API_KEY"),
    "openrouter": ("OPENROUTER_API_KEY", "OR_API_KEY"),
    "deepinfra": ("DEEPINFRA_API_KEY",),
}
"""Hosted providers checked before a call: the environment variables LiteLLM 1.110 reads their key
from (any one will do; read from its source). Providers with other ways to sign in (Azure AD, AWS
roles, Vertex ADC, OAuth files) are not listed: their failures are classified after the call."""

_MISSING_KEY: Final = re.compile(
    r"missing credentials|missing [\w ]{0,40}api[ _-]?key|no api[ _-]?key|api_key client option must be set",
    re.IGNORECASE,
)
_NO_PROVIDER: Final = "LLM Provider NOT provided"
_LITELLM_PREFIX: Final = re.compile(r"^(litellm\.)?\w+Error:\s*(\w+Error:\s*)?(\w+Exception\s*-\s*)?")
_DETAIL_CHARS: Final = 160


class ModelConfigError(ValueError):
    """A model that cannot be called as configured (no API key, a provider LiteLLM does not know, no
    server at ``api_base``); raised before the call or at its first attempt, never retried.

    ``str(error)`` is one line: ``model 'NAME': PROBLEM; FIX``. ``model`` is the model's name,
    ``problem`` what is wrong, ``fix`` what to do, ``missing`` the environment variables of which one
    must be set (empty when the problem is not a missing key). Secrets are masked in all of them.
    """

    def __init__(self, model: str, problem: str, fix: str, missing: Iterable[str] = ()) -> None:
        self.model = model
        self.problem = _one_line(problem)
        self.fix = _one_line(fix)
        self.missing: tuple[str, ...] = tuple(missing)
        super().__init__(f"model {model!r}: {self.problem}; {self.fix}")

    def __reduce__(self) -> tuple[Any, ...]:  # picklable (Ray workers, checkpoints) with its fields
        return (type(self), (self.model, self.problem, self.fix, self.missing))


def _one_line(text: str) -> str:
    return mask_secrets(" ".join(text.split()))


def _set_hint(missing: tuple[str, ...]) -> str:
    names = " or ".join(missing)
    return f"set {names} (or pass ModelSpec(api_key=...))"


def _key_in_env(names: Iterable[str]) -> bool:
    return any(os.environ.get(name, "").strip() for name in names)


@functools.cache
def _known_providers() -> frozenset[str]:
    from ttc_agents._llm.litellm import litellm

    return frozenset(str(getattr(p, "value", p)) for p in litellm.provider_list)


def _custom_providers() -> set[str]:
    from ttc_agents._llm.litellm import litellm

    return {str(item.get("provider")) for item in litellm.custom_provider_map if isinstance(item, dict)}


def _unknown_provider(model: str) -> ModelConfigError:
    prefix, sep, _ = model.partition("/")
    problem = f"LiteLLM knows no provider {prefix!r}" if sep else "LiteLLM cannot tell which provider serves this name"
    return ModelConfigError(
        model,
        problem,
        "write PROVIDER/MODEL (openai/gpt-4o-mini, anthropic/claude-3-5-haiku-latest, gemini/gemini-2.0-flash, ...), "
        "local/<model> or scripted/<profile>, or openai/NAME with api_base for an OpenAI-compatible server",
    )


def _provider_of(model: str) -> str | None:
    """The LiteLLM provider of ``model``; raises :class:`ModelConfigError` when LiteLLM knows none."""
    prefix, sep, _ = model.partition("/")
    if sep and (prefix in _known_providers() or prefix in _custom_providers()):
        return prefix
    from litellm.exceptions import BadRequestError

    from ttc_agents._llm.litellm import litellm

    try:
        return str(litellm.get_llm_provider(model)[1])
    except BadRequestError as exc:
        if _NO_PROVIDER in str(exc):
            raise _unknown_provider(model) from None
        return None
    except Exception:  # the check never blocks a call on its own failure
        return None


def _key_in_code(provider: str) -> bool:
    """A key set in code (``litellm.api_key``, ``litellm.openai_key``...) or a secret manager. Without
    LiteLLM imported yet, nothing can have been set in code."""
    litellm = sys.modules.get("litellm")
    if litellm is None:
        return False
    if getattr(litellm, "api_key", None) or getattr(litellm, f"{provider}_key", None):
        return True
    return getattr(litellm, "secret_manager_client", None) is not None


def _key_elsewhere(provider: str) -> bool:
    """A key set in code, or a custom ``<PROVIDER>_API_BASE`` (a proxy that may need no key): the
    environment check does not apply."""
    return _key_in_code(provider) or bool(os.environ.get(f"{provider.upper()}_API_BASE", "").strip())


def openai_key_missing(model: str) -> bool:
    """``model`` takes LiteLLM's OpenAI route (``openai/...``) and no OpenAI key is set anywhere LiteLLM
    reads one. OpenAI's client refuses to send without a key, even to a server that checks none: the
    gateway sends ``"none"`` to an explicit ``api_base`` then (a server that wants a key answers 401)."""
    if model.partition("/")[0] != "openai":
        return False
    return not _key_in_env(PROVIDER_KEYS["openai"]) and not _key_in_code("openai")


def check_model_config(model: str) -> None:
    """Raise :class:`ModelConfigError` when LiteLLM knows no provider for ``model`` or the key of its
    hosted provider (:data:`PROVIDER_KEYS`) is not set. For a spec with neither ``api_base`` nor
    ``api_key`` of its own and no resolver prefix (the caller decides that).

    A name whose prefix is in :data:`PROVIDER_KEYS` is checked without importing LiteLLM (the CLI
    checks ``--model`` before loading anything heavy)."""
    prefix, sep, _ = model.partition("/")
    provider = prefix if sep and prefix in PROVIDER_KEYS else _provider_of(model)
    if provider is None or provider not in PROVIDER_KEYS:
        return
    names = PROVIDER_KEYS[provider]
    if _key_in_env(names) or _key_elsewhere(provider):
        return
    raise ModelConfigError(model, f"no API key for {provider}", _set_hint(names), names)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending and len(seen) < 32:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for linked in (current.__cause__, current.__context__, getattr(current, "original_exception", None)):
            if isinstance(linked, BaseException):
                pending.append(linked)


def _text(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # a third-party __str__ that fails must not hide the error it describes
        return type(exc).__name__


def is_connection_refused(exc: BaseException) -> bool:
    """True when ``exc`` (or what caused it) is a refused TCP connection."""
    return any(isinstance(e, ConnectionRefusedError) for e in _chain(exc))


def _detail(exc: BaseException) -> str:
    """The provider's own words, on one line: LiteLLM's class prefixes cut, at most 160 characters."""
    text = _text(exc).strip()
    text = text.splitlines()[0] if text else type(exc).__name__
    text = _LITELLM_PREFIX.sub("", text).strip() or type(exc).__name__
    text = mask_secrets(text)
    return text if len(text) <= _DETAIL_CHARS else text[: _DETAIL_CHARS - 3] + "..."


def _missing_for(model: str) -> tuple[str, ...]:
    prefix, sep, _ = model.partition("/")
    if sep and prefix in PROVIDER_KEYS:
        return PROVIDER_KEYS[prefix]
    try:
        provider = _provider_of(model)
    except ModelConfigError:
        return ()
    return PROVIDER_KEYS.get(provider or "", ())


def config_error_of(
    exc: BaseException, *, model: str, api_base: str | None, has_key: bool, reached: bool
) -> ModelConfigError | None:
    """The :class:`ModelConfigError` that a failed attempt's ``exc`` means, or None (a failure that is
    not about configuration: 429, 5xx, timeouts... keep their own retry rules).

    ``api_base``: where the request went (None: the provider's default host); ``has_key``: the spec
    carried its own ``api_key``; ``reached``: a call to ``api_base`` has succeeded in this gateway.
    """
    messages = [_text(e) for e in _chain(exc)]
    if any(_NO_PROVIDER in text for text in messages):
        return _unknown_provider(model)
    if any(_MISSING_KEY.search(text) for text in messages):
        missing = () if has_key else _missing_for(model)
        fix = "check ModelSpec(api_key=...)" if has_key else (_set_hint(missing) if missing else "")
        fix = fix or "set the provider's API key variable (LiteLLM's docs name it) or pass ModelSpec(api_key=...)"
        return ModelConfigError(model, f"the provider's client has no API key ({_detail(exc)})", fix, missing)
    if api_base and not reached and is_connection_refused(exc):
        return ModelConfigError(
            model,
            f"nothing accepts connections at {api_base} (connection refused; nothing has answered there yet)",
            "start the model server, or set api_base to where it listens (`ttc serve-local` starts the local one)",
        )
    return None


def add_status_hint(exc: BaseException, *, model: str, api_base: str | None, has_key: bool) -> bool:
    """For a 401 (a key the server refused) or a 404 (a model it does not know, or a wrong
    ``api_base`` path), put ``exc``'s message on one line and append the model and what to check, in
    place; True when it did. Both are errors of the server's own (never retried, as every 4xx but
    408 and 429), and keep their LiteLLM types (``AuthenticationError``, ``NotFoundError``) for callers
    and records that name them."""
    status = getattr(exc, "status_code", None)
    where = f" at {api_base}" if api_base else ""
    if status == 401:
        missing = _missing_for(model)
        if has_key:
            fix = "check ModelSpec(api_key=...)"
        elif missing:
            fix = f"set a valid {' or '.join(missing)}" + (" or pass ModelSpec(api_key=...)" if api_base else "")
        else:
            fix = "pass ModelSpec(api_key=...)"
        hint = f"model {model!r}: the server{where} refused the API key; {fix}"
    elif status == 404:
        fix = "check the model name" + (" and api_base (an OpenAI-compatible server's ends in /v1)" if api_base else "")
        hint = f"model {model!r}: the server{where} does not know this model; {fix}"
    else:
        return False
    message = getattr(exc, "message", None)
    text = " ".join((message if isinstance(message, str) else _text(exc)).split())
    if hint in text:
        return True
    text = f"{text} ({hint})"
    if isinstance(message, str):
        with contextlib.suppress(AttributeError, TypeError):
            exc.message = text  # type: ignore[attr-defined]  # what LiteLLM's __str__ prints
    with contextlib.suppress(AttributeError, TypeError):
        exc.args = (text, *exc.args[1:])
    return True
