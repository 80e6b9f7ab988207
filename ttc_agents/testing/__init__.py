"""Test doubles for your own offline tests (no key, no network).

- :class:`FakeOpenAIServer` (with :class:`FakeServerConfig`, :class:`Fault`, :class:`FaultKind`,
  :class:`TextSource`, :class:`RecordedRequest`, :class:`BilledUsage`): an OpenAI-compatible server on
  127.0.0.1 with fault injection (errors, Retry-After, short ``n``, ignored ``max_tokens``, ...);
- synthetic populations behind the scripted models ``scripted/pop-<setting>``: :data:`POPULATION_SETTINGS`
  (the named :class:`PopulationProfile` values), :func:`population_model` (the model name of a setting)
  and :func:`population_oracle` (a question's latent pass@1).

The scripted models themselves (``scripted/arith``, ``scripted/arith-easy``, ``scripted/arith-hard``) are
registered with LiteLLM when ttc-agents loads; use their names wherever a model is accepted.
"""

from ttc_agents._llm.population import POPULATION_SETTINGS, PopulationProfile, population_model, population_oracle
from ttc_agents.testing._local_fixture import local_server_fixture
from ttc_agents.testing._openai_server import (
    BilledUsage,
    FakeOpenAIServer,
    FakeServerConfig,
    Fault,
    FaultKind,
    RecordedRequest,
    TextSource,
)
from ttc_agents.testing._servers import ServerProcess, closed_port, serve_scripted, serve_until_stdin_closes

__all__ = [
    "POPULATION_SETTINGS",
    "BilledUsage",
    "FakeOpenAIServer",
    "FakeServerConfig",
    "Fault",
    "FaultKind",
    "PopulationProfile",
    "RecordedRequest",
    "ServerProcess",
    "TextSource",
    "closed_port",
    "local_server_fixture",
    "population_model",
    "population_oracle",
    "serve_scripted",
    "serve_until_stdin_closes",
]
