"""A model that cannot work as configured fails at once, without retries, in one line naming the model
and what to set (issue 18): no API key, a provider LiteLLM does not know, a model the server does not
know (404), a refused key (401), and no server at ``api_base``. Retries stay for what another attempt
can fix (429, 5xx, a server that answered before and now refuses connections while it restarts).

Every case counts the attempts (calls of ``litellm.acompletion`` or requests the fake server saw): no
assertion is about wall-clock time. Offline: everything goes to 127.0.0.1 or never leaves the process.
"""

from __future__ import annotations

import pickle
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litellm.exceptions import AuthenticationError, NotFoundError
from pydantic import SecretStr

import ttc_agents
import ttc_agents.cli
from ttc_agents import (
    ArithmeticStepVerifier,
    BeamSearchSpec,
    BestOfNSpec,
    Gateway,
    ModelConfigError,
    ModelSpec,
    RetryPolicy,
    WorkflowConfigError,
    build_strategy_graph,
)
from ttc_agents._llm.errors import PROVIDER_KEYS, config_error_of
from ttc_agents._llm.litellm import litellm
from ttc_agents._llm.openai_http import OpenAIHTTPTransport
from ttc_agents._llm.providers import register_providers
from ttc_agents._llm.retry import is_retryable
from ttc_agents._llm.secrets import register_secret
from ttc_agents._routing.policy import Cost, Policy, PolicyAction, PolicyEntry
from ttc_agents.graphs.router import Router
from ttc_agents.integrations.litellm_provider import register_ttc_provider
from ttc_agents.testing import FakeOpenAIServer, FakeServerConfig, Fault
from ttc_agents.verifiers import LLMJudgePRM

MESSAGES = [{"role": "user", "content": "What is 2+3?"}]
RETRIES = RetryPolicy(max_attempts=3, initial_wait=0.0, max_wait=0.0, jitter=0.0)


class Attempts:
    """Counts requests, through LiteLLM (``litellm.acompletion``) or the lean transport to an OpenAI-compatible
    ``api_base`` (``OpenAIHTTPTransport.chat``), passing them on (or refusing them: ``forward=False``)."""

    def __init__(self, forward: bool = True) -> None:
        self.count = 0
        self.forward = forward
        self._real = litellm.acompletion
        self._real_chat = OpenAIHTTPTransport.chat

    def _count(self) -> None:
        self.count += 1
        if not self.forward:
            raise AssertionError("a request was sent; the configuration check should have stopped it")

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self._count()
        return await self._real(*args, **kwargs)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> Attempts:
        async def chat(transport: OpenAIHTTPTransport, **kwargs: Any) -> Any:
            self._count()
            return await self._real_chat(transport, **kwargs)

        monkeypatch.setattr(litellm, "acompletion", self)
        monkeypatch.setattr(OpenAIHTTPTransport, "chat", chat)
        return self


@pytest.fixture(autouse=True)
def no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """No provider key anywhere: environment, LiteLLM's module-level keys, custom API bases."""
    for names in PROVIDER_KEYS.values():
        for name in names:
            monkeypatch.delenv(name, raising=False)
    for provider in PROVIDER_KEYS:
        monkeypatch.delenv(f"{provider.upper()}_API_BASE", raising=False)
        if hasattr(litellm, f"{provider}_key"):
            monkeypatch.setattr(litellm, f"{provider}_key", None)
    monkeypatch.setattr(litellm, "api_key", None)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


@pytest.fixture
def attempts(monkeypatch: pytest.MonkeyPatch) -> Attempts:
    return Attempts().install(monkeypatch)


@pytest.fixture
def unsent(monkeypatch: pytest.MonkeyPatch) -> Attempts:
    return Attempts(forward=False).install(monkeypatch)


def _one_line(error: BaseException, *needles: str) -> str:
    text = str(error)
    assert "\n" not in text and text == " ".join(text.split()), text
    for needle in needles:
        assert needle in text, (needle, text)
    return text


def _free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- missing keys: found before any request -----------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "missing"),
    [
        ("openai/gpt-4o-mini", ("OPENAI_API_KEY",)),
        ("gpt-4o-mini", ("OPENAI_API_KEY",)),
        ("anthropic/claude-3-5-haiku-latest", ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN")),
        ("gemini/gemini-2.0-flash", ("GEMINI_API_KEY", "GOOGLE_API_KEY")),
        ("groq/llama-3.1-8b-instant", ("GROQ_API_KEY",)),
    ],
)
async def test_a_missing_key_fails_before_any_request(model: str, missing: tuple[str, ...], unsent: Attempts) -> None:
    with pytest.raises(ModelConfigError) as info:
        await Gateway(retry=RETRIES).sample(model, MESSAGES)
    _one_line(info.value, repr(model), missing[0])
    assert info.value.model == model and info.value.missing == missing
    assert unsent.count == 0


async def test_an_empty_key_counts_as_missing(monkeypatch: pytest.MonkeyPatch, unsent: Attempts) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "  ")
    with pytest.raises(ModelConfigError, match="OPENAI_API_KEY"):
        await Gateway(retry=RETRIES).sample("openai/gpt-4o-mini", MESSAGES)
    assert unsent.count == 0


@pytest.mark.parametrize(
    ("setup", "model"),
    [
        ({"env": ("OPENAI_API_KEY", "sk-test-0123456789")}, "openai/gpt-4o-mini"),
        ({"env": ("GOOGLE_API_KEY", "test-key-0123456789")}, "gemini/gemini-2.0-flash"),  # either name will do
        ({"env": ("CO_API_KEY", "test-key-0123456789")}, "cohere/command-r"),
        ({"env": ("GROQ_API_BASE", "http://127.0.0.1:1/v1")}, "groq/llama-3.1-8b-instant"),  # a proxy of one's own
        ({"litellm": ("openai_key", "sk-test-0123456789")}, "openai/gpt-4o-mini"),  # a key set in code
    ],
)
async def test_a_key_from_anywhere_litellm_reads_lets_the_request_go(
    setup: dict[str, tuple[str, str]], model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if "env" in setup:
        monkeypatch.setenv(*setup["env"])
    else:
        monkeypatch.setattr(litellm, *setup["litellm"])
    sent = Attempts(forward=False)
    monkeypatch.setattr(litellm, "acompletion", sent)
    with pytest.raises(AssertionError, match="a request was sent"):
        await Gateway(retry=RETRIES).sample(model, MESSAGES)
    assert sent.count == 1


async def test_explicit_keys_bases_resolvers_and_custom_providers_are_not_checked(attempts: Attempts) -> None:
    register_providers()
    with FakeOpenAIServer(FakeServerConfig()) as server:
        url = server.url

        def resolve(name: str) -> tuple[str, str | None]:
            return "openai/fake", url

        gateway = Gateway(retry=RETRIES, resolvers={"local": resolve})
        for model in (
            ModelSpec(name="openai/fake", api_base=server.url, api_key=SecretStr("none")),
            ModelSpec(name="hosted_vllm/fake", api_base=server.url),
            "local/tiny",  # no OPENAI_API_KEY: the gateway sends "none" to the server it resolved
            "scripted/arith",
        ):
            batch = await gateway.sample(model, MESSAGES)
            assert len(batch.samples) == 1, model
        assert server.request_count == 3
    assert attempts.count == 4
    # An explicit api_key is never second-guessed: the request goes (and fails offline).
    attempts.forward = False
    with pytest.raises(AssertionError, match="a request was sent"):
        await gateway.sample(ModelSpec(name="openai/gpt-4o-mini", api_key=SecretStr("sk-test-0123456789")), MESSAGES)


async def test_a_replayed_recording_needs_no_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ttc_agents import ResponseStore

    store = ResponseStore(tmp_path / "store.sqlite")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789")
    real = litellm.acompletion
    sent = 0
    with FakeOpenAIServer(FakeServerConfig()) as server:

        async def answer(*args: Any, **kwargs: Any) -> Any:  # the hosted model, played by the fake server
            nonlocal sent
            sent += 1
            return await real(*args, **{**kwargs, "model": "openai/fake", "api_base": server.url, "api_key": "none"})

        monkeypatch.setattr(litellm, "acompletion", answer)
        await Gateway(retry=RETRIES, store=store).sample("openai/gpt-4o-mini", MESSAGES, seed=1)
    assert sent == 1
    monkeypatch.delenv("OPENAI_API_KEY")
    replay = Attempts(forward=False)
    monkeypatch.setattr(litellm, "acompletion", replay)
    batch = await Gateway(retry=RETRIES, store=store).sample("openai/gpt-4o-mini", MESSAGES, seed=1)
    assert batch.usage.replayed == 1 and replay.count == 0


# -- unknown provider ---------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["foo/bar", "nosuchmodel"])
async def test_an_unknown_provider_fails_before_any_request(model: str, unsent: Attempts) -> None:
    with pytest.raises(ModelConfigError) as info:
        await Gateway(retry=RETRIES).sample(model, MESSAGES)
    _one_line(info.value, repr(model), "PROVIDER/MODEL", "api_base")
    assert unsent.count == 0


async def test_an_unknown_provider_with_an_api_base_fails_at_the_first_attempt(attempts: Attempts) -> None:
    spec = ModelSpec(name="foo/bar", api_base=f"http://127.0.0.1:{_free_port()}/v1", api_key=SecretStr("none"))
    with pytest.raises(ModelConfigError) as info:
        await Gateway(retry=RETRIES).sample(spec, MESSAGES)
    _one_line(info.value, "'foo/bar'", "LiteLLM knows no provider 'foo'")
    assert attempts.count == 1


# -- what the server says: 404, 401, a missing key in the client ---------------------------------------


@pytest.mark.parametrize(
    ("status", "kind", "words"),
    [
        (404, NotFoundError, "does not know this model; check the model name and api_base"),
        (401, AuthenticationError, "refused the API key; set a valid OPENAI_API_KEY"),
    ],
)
async def test_404_and_401_fail_at_the_first_attempt_naming_the_model(
    status: int, kind: type[Exception], words: str
) -> None:
    # They keep LiteLLM's types (callers and batch records name them), with the model and the fix added.
    with FakeOpenAIServer(FakeServerConfig(faults=[Fault.http_error(status)] * 3)) as server:
        spec = ModelSpec(name="openai/nosuch", api_base=server.url, timeout=5)
        with pytest.raises(kind) as info:
            await Gateway(retry=RETRIES).sample(spec, MESSAGES)
        assert server.request_count == 1
        _one_line(info.value, f"model 'openai/nosuch': the server at {server.url}", words)


async def test_a_missing_key_the_check_cannot_see_fails_at_the_first_attempt(
    monkeypatch: pytest.MonkeyPatch, attempts: Attempts
) -> None:
    # OPENAI_API_BASE skips the check (a proxy may need no key); OpenAI's client still wants one.
    monkeypatch.setenv("OPENAI_API_BASE", f"http://127.0.0.1:{_free_port()}/v1")
    with pytest.raises(ModelConfigError) as info:
        await Gateway(retry=RETRIES).sample("openai/gpt-4o-mini", MESSAGES)
    _one_line(info.value, "'openai/gpt-4o-mini'", "no API key", "OPENAI_API_KEY")
    assert info.value.missing == ("OPENAI_API_KEY",) and attempts.count == 1


def test_a_key_the_server_echoes_is_masked() -> None:
    key = "sk-live-abcdefghijklmnop"
    register_secret(key)
    error = config_error_of(
        RuntimeError(f"Missing credentials: the key {key} was refused"),
        model="openai/gpt-4o-mini",
        api_base=None,
        has_key=True,
        reached=False,
    )
    assert error is not None and key not in str(error) and "***" in _one_line(error, "ModelSpec(api_key=...)")


# -- nothing listening at api_base --------------------------------------------------------------------


async def test_a_refused_connection_to_an_endpoint_that_never_answered_fails_at_once(attempts: Attempts) -> None:
    api_base = f"http://127.0.0.1:{_free_port()}/v1"
    with pytest.raises(ModelConfigError) as info:
        await Gateway(retry=RETRIES).sample(
            ModelSpec(name="openai/x", api_base=api_base, api_key=SecretStr("none")), MESSAGES
        )
    _one_line(info.value, "'openai/x'", f"nothing accepts connections at {api_base}", "start the model server")
    assert attempts.count == 1


async def test_a_refused_connection_after_a_success_is_a_restart_and_is_retried(attempts: Attempts) -> None:
    gateway = Gateway(retry=RETRIES)
    with FakeOpenAIServer(FakeServerConfig()) as server:
        spec = ModelSpec(name="openai/fake", api_base=server.url, api_key=SecretStr("none"))
        await gateway.sample(spec, MESSAGES)
    assert attempts.count == 1
    with pytest.raises(Exception) as info:  # the server is gone now: LiteLLM's connection error, after retries
        await gateway.sample(spec, MESSAGES)
    assert not isinstance(info.value, ModelConfigError) and is_retryable(info.value)
    assert attempts.count == 1 + RETRIES.max_attempts


# -- retries stay for what another attempt can fix ----------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_rate_limits_and_server_errors_are_still_retried(status: int) -> None:
    with FakeOpenAIServer(FakeServerConfig(faults=[Fault.http_error(status)] * 2)) as server:
        spec = ModelSpec(name="openai/fake", api_base=server.url, api_key=SecretStr("none"))
        batch = await Gateway(retry=RETRIES).sample(spec, MESSAGES)
        assert len(batch.samples) == 1 and server.request_count == 3


def test_a_config_error_is_never_retryable_and_pickles() -> None:
    error = ModelConfigError("openai/gpt-4o-mini", "no API key for openai", "set OPENAI_API_KEY", ["OPENAI_API_KEY"])
    assert not is_retryable(error) and isinstance(error, ValueError)
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == str(error) and copy.missing == ("OPENAI_API_KEY",) and copy.model == error.model
    assert ttc_agents.ModelConfigError is ModelConfigError and "ModelConfigError" in ttc_agents.__all__


# -- from Python: the graphs and the Router raise the error itself ------------------------------------


async def test_the_quickstart_graph_raises_the_error_itself(unsent: Attempts) -> None:
    graph = build_strategy_graph(
        BeamSearchSpec(n=8, width=2), model="openai/gpt-4o-mini", verifier=LLMJudgePRM("openai/gpt-4o-mini")
    )
    with pytest.raises(ModelConfigError) as info:
        await graph.ainvoke({"question": "What is 12 * 7 + 5?"})
    assert type(info.value) is ModelConfigError
    _one_line(info.value, "model 'openai/gpt-4o-mini'", "set OPENAI_API_KEY")
    assert unsent.count == 0


async def test_best_of_n_raises_the_error_itself(unsent: Attempts) -> None:
    graph = build_strategy_graph(BestOfNSpec(n=4), model="anthropic/claude-3-5-haiku-latest", verifier=None)
    with pytest.raises(ModelConfigError, match="ANTHROPIC_API_KEY"):
        await graph.ainvoke({"question": "What is 2+3?"})
    assert unsent.count == 0


async def test_the_router_raises_the_error_itself(unsent: Attempts) -> None:
    model = "openai/gpt-4o-mini"
    table = [
        PolicyEntry(
            bin=bin_,
            budget=4,
            action=PolicyAction(model=model, strategy=BestOfNSpec(n=4, seed=0)),
            accuracy=0.5,
            cv_accuracy=0.5,
            cost=Cost(samples=4, tokens=400),
            questions=10,
        )
        for bin_ in range(1, 6)
    ]
    policy = Policy(
        models=[model],
        verifier="arithmetic",
        dataset="synthetic",
        thresholds=[0.5, 0.7, 0.85, 0.95],
        table=table,
        candidates=table,
    )
    router = Router(policy, verifier=ArithmeticStepVerifier(), verifier_name="arithmetic")
    with pytest.raises(ModelConfigError) as info:
        await router.graph.ainvoke({"question": "What is 2+3?"})
    assert type(info.value) is ModelConfigError
    _one_line(info.value, repr(model), "OPENAI_API_KEY")
    assert unsent.count == 0


# -- from the command line: one line, exit code 1 -----------------------------------------------------


def _solve(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code = ttc_agents.cli.main(["solve", "What is 2+3?", *args])
    captured = capsys.readouterr()
    assert code == 1 and captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ttc solve: error: model "), captured.err
    return lines[0]


@pytest.fixture
def cli_gateway(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A fresh process-wide gateway with fast retries for the CLI, restored afterwards."""
    from ttc_agents import get_default_gateway, set_default_gateway

    before = get_default_gateway()
    set_default_gateway(Gateway(retry=RETRIES, resolvers=dict(before.resolvers)))
    yield
    set_default_gateway(before)


@pytest.mark.usefixtures("cli_gateway")
@pytest.mark.parametrize(
    ("model", "needle"), [("openai/gpt-4o-mini", "set OPENAI_API_KEY"), ("foo/bar", "knows no provider 'foo'")]
)
def test_the_cli_prints_one_line_without_sending_anything(
    model: str, needle: str, unsent: Attempts, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _solve(capsys, "--model", model)
    assert repr(model) in line and needle in line
    assert unsent.count == 0


@pytest.mark.usefixtures("cli_gateway")
def test_the_cli_names_an_api_base_with_nothing_behind_it(
    attempts: Attempts, capsys: pytest.CaptureFixture[str]
) -> None:
    api_base = f"http://127.0.0.1:{_free_port()}/v1"
    line = _solve(capsys, "--model", "openai/x", "--api-base", api_base, "--verifier", "none")
    assert f"nothing accepts connections at {api_base}" in line
    assert attempts.count == 1


# -- register_ttc_provider ----------------------------------------------------------------------------


def test_registering_a_missing_workflow_file_fails_naming_it(tmp_path: Path) -> None:
    before = list(litellm.custom_provider_map)
    missing = tmp_path / "missing.yaml"
    with pytest.raises(WorkflowConfigError) as info:
        register_ttc_provider(missing, provider="ttc-missing")
    _one_line(info.value, str(missing), "does not exist")
    with pytest.raises(WorkflowConfigError, match="is a directory"):
        register_ttc_provider(tmp_path, provider="ttc-missing")
    broken = tmp_path / "broken.yaml"
    broken.write_text("workflows: [1, 2\n", encoding="utf-8")
    with pytest.raises(WorkflowConfigError, match=r"broken\.yaml"):
        register_ttc_provider(broken, provider="ttc-missing")
    assert litellm.custom_provider_map == before  # nothing registered


@pytest.mark.usefixtures("cli_gateway")
def test_the_cli_reaches_a_keyless_server_at_api_base_without_any_key(capsys: pytest.CaptureFixture[str]) -> None:
    # OpenAI's client refuses to send without a key; the gateway sends "none" to an explicit api_base.
    with FakeOpenAIServer(FakeServerConfig()) as server:
        code = ttc_agents.cli.main(
            [
                "solve",
                "What is 2+3?",
                "--model",
                "openai/fake",
                "--api-base",
                server.url,
                "--n",
                "2",
                "--verifier",
                "none",
            ]
        )
        assert code == 0 and server.request_count >= 1
    assert "42" in capsys.readouterr().out


def test_masking_keeps_named_tuples_whole() -> None:
    from typing import NamedTuple

    from ttc_agents._llm.secrets import mask_exception

    class Key(NamedTuple):
        host: str
        ssl: bool

    register_secret("sk-live-abcdefghijklmnop")
    error = RuntimeError("failed")
    error.key = Key("127.0.0.1", False)  # type: ignore[attr-defined]
    error.echo = ("sk-live-abcdefghijklmnop", 1)  # type: ignore[attr-defined]
    mask_exception(error)
    assert error.key.ssl is False  # type: ignore[attr-defined]  # aiohttp's ConnectionKey: str() reads .ssl
    assert error.echo == ("***", 1)  # type: ignore[attr-defined]
