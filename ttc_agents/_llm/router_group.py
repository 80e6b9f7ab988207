"""Router groups: several deployments of one model behind ONE ``litellm.Router``.

A :class:`~ttc_agents.ModelSpec` with a ``group`` is served by many deployments (vLLM or llama.cpp
servers, hosted endpoints) that LiteLLM's Router balances with a routing strategy, weights and
cooldowns, with fallback deployments for requests the group fails::

    models:
      main:
        name: openai/qwen2.5-math-7b       # the deployments' LiteLLM model string (unless they give one)
        api_key: none                      # their key (unless they give one; `os.environ/NAME` works)
        group:
          deployments:
            - {api_base: "http://gpu-1:8000/v1", weight: 2}
            - {api_base: "http://gpu-2:8000/v1"}
          routing_strategy: simple-shuffle
          cooldown_time: 30                # seconds a failing deployment is left out
          allowed_fails: 1                 # failures per minute before the cooldown
          fallbacks: [{model: openai/gpt-4o-mini, api_key: os.environ/OPENAI_API_KEY, id: hosted}]

Who does what: the Router picks a deployment for every request (strategy, weights, ``rpm``/``tpm``,
cooldowns) and, when that deployment fails, tries the ``fallbacks`` in order; its own retries are off.
Retrying with backoff stays the gateway's job (tenacity, within the time budget), so there is one
retry mechanism: a failed attempt names its deployment (``failed_deployment_id``), and the next
attempt goes through the Router again, which leaves cooled down deployments out. The ledger books
every call under ``<name>@<deployment id>`` (the id defaults to the deployment's ``api_base``, else
its model) at that deployment's price, and every failed attempt of the group's deployments as a
failed call of that deployment; a budget reserves at the highest price of the group. (Failed
attempts on *fallback* deployments inside one Router call are not reported by LiteLLM, so they are
not counted; their successful calls are.)

:class:`RouterGroups` keeps one Router per group and event loop (LiteLLM's HTTP clients belong to a
loop), created on first use.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ttc_agents._core.budget import Ledger, Usage
from ttc_agents._llm.deployments import Deployment, RouterGroup, RoutingStrategy  # the group's configuration
from ttc_agents._llm.models import ModelSpec

__all__ = ["Deployment", "RouterGroup", "RouterGroups", "RoutingStrategy", "failed_deployment_key"]


def ledger_key(name: str, deployment_id: str) -> str:
    """How the ledger names a deployment of group ``name``."""
    return f"{name}@{deployment_id}"


def failed_deployment_key(spec: ModelSpec, exc: BaseException) -> str:
    """The ledger name for a failed call of ``spec``: its deployment's, when a group call names it."""
    deployment = getattr(exc, "failed_deployment_id", None)
    if spec.group is None or not isinstance(deployment, str):
        return spec.name
    return ledger_key(spec.name, deployment)


@dataclass(frozen=True, slots=True)
class _Group:
    """A group's Router on one event loop."""

    router: Any
    owner: RouterGroup  # keeps the group alive, so that its id() in the cache key stays its own


class RouterGroups:
    """One ``litellm.Router`` per group and event loop, created on first use (a Gateway holds one)."""

    def __init__(self) -> None:
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[Any, ...], _Group]] = (
            weakref.WeakKeyDictionary()
        )
        self._priced: dict[tuple[Any, ...], tuple[RouterGroup, dict[str, ModelSpec]]] = {}

    @staticmethod
    def _key(spec: ModelSpec) -> tuple[Any, ...]:
        key = None if spec.api_key is None else spec.api_key.get_secret_value()
        return (id(spec.group), spec.name, key)

    def priced_specs(self, spec: ModelSpec) -> dict[str, ModelSpec]:
        """Per deployment id, a plain spec (no group) with the deployment's model, api_base and prices:
        its own, else the ModelSpec's when it serves the ModelSpec's model; what is still unset comes
        from LiteLLM's cost map for its model."""
        group = _group_of(spec)
        key = self._key(spec)
        cached = self._priced.get(key)
        if cached is None:
            priced: dict[str, ModelSpec] = {}
            for d in group.resolve(spec.name, spec.api_key):
                same_model = d.model == spec.name
                p_in = _first(d.spec.usd_per_input_token, spec.usd_per_input_token if same_model else None)
                p_out = _first(d.spec.usd_per_output_token, spec.usd_per_output_token if same_model else None)
                priced[d.id] = spec.model_copy(
                    update={
                        "name": d.model,
                        "group": None,
                        "api_base": d.spec.api_base,
                        "usd_per_input_token": p_in,
                        "usd_per_output_token": p_out,
                    }
                )
            cached = self._priced[key] = (group, priced)  # the group stays alive: its id() stays its own
        return cached[1]

    def router(self, spec: ModelSpec) -> Any:
        """The Router of ``spec``'s group on the running event loop (built on first use)."""
        loop = asyncio.get_running_loop()
        groups = self._by_loop.setdefault(loop, {})
        key = self._key(spec)
        entry = groups.get(key)
        if entry is None:
            entry = _Group(_build_router(spec), _group_of(spec))
            groups[key] = entry
        return entry.router

    async def acompletion(
        self, spec: ModelSpec, messages: Sequence[Any], *, ledger: Ledger, node: str, **kwargs: Any
    ) -> Any:
        """One request through the group's Router (no retries of its own).

        Attempts the Router made and gave up on before a fallback answered are booked here as
        failed calls of their deployments; the call that answered is booked by the gateway
        (:meth:`booking`), a failure that reaches the caller too (:func:`failed_deployment_key`).
        """
        router = self.router(spec)
        metadata: dict[str, Any] = {}
        response = await router.acompletion(
            model=spec.name,
            messages=list(messages),
            metadata=metadata,
            num_retries=0,
            max_retries=0,
            drop_params=True,
            caching=False,
            **kwargs,
        )
        for deployment in _absorbed_failures(metadata):
            key = spec.name if deployment is None else ledger_key(spec.name, deployment)
            ledger.settle(None, Usage(failed_calls=1), node=node, model=key)
        return response

    def booking(self, spec: ModelSpec, response: Any) -> tuple[str, ModelSpec]:
        """The ledger name of the deployment that answered, and the spec its usage is priced with."""
        hidden = getattr(response, "_hidden_params", None) or {}
        deployment = hidden.get("model_id")
        if not isinstance(deployment, str):
            return spec.name, spec
        priced = self.priced_specs(spec).get(deployment, spec)
        return ledger_key(spec.name, deployment), priced


def worst_case_prices(prices: Iterable[tuple[float | None, float | None]]) -> tuple[float | None, float | None]:
    """The highest price per prompt and per completion token over deployments (None if any is unknown)."""
    ins: list[float | None] = []
    outs: list[float | None] = []
    for p_in, p_out in prices:
        ins.append(p_in)
        outs.append(p_out)
    return _max_known(ins), _max_known(outs)


def _max_known(values: Sequence[float | None]) -> float | None:
    if not values or any(v is None for v in values):
        return None
    return max(v for v in values if v is not None)


def _first(*values: float | None) -> float | None:
    return next((v for v in values if v is not None), None)


def _group_of(spec: ModelSpec) -> RouterGroup:
    if spec.group is None:
        raise ValueError(f"model {spec.name!r} has no `group` of deployments")
    return spec.group


def _absorbed_failures(metadata: dict[str, Any]) -> list[str | None]:
    """Deployments that failed inside a Router call that still answered (through a fallback): the
    Router counts them in ``request_retry_count`` and names the last few in ``previous_models``."""
    count = metadata.get("request_retry_count")
    if not isinstance(count, int) or count <= 0:
        return []
    crumbs = metadata.get("previous_models") or ()
    named: list[str | None] = [
        c.get("deployment_id") if isinstance(c, dict) and isinstance(c.get("deployment_id"), str) else None
        for c in crumbs
    ][-count:]
    return [None] * (count - len(named)) + named


def _build_router(spec: ModelSpec) -> Any:
    import ttc_agents._llm.litellm  # noqa: F401, I001  # sets LiteLLM's offline switches before it loads
    from litellm.router import Router

    group = _group_of(spec)
    resolved = group.resolve(spec.name, spec.api_key)
    fallback_groups = list(dict.fromkeys(d.group for d in resolved if d.group != spec.name))
    settings: dict[str, Any] = {
        "model_list": [d.router_entry() for d in resolved],
        "routing_strategy": group.routing_strategy,
        "num_retries": 0,
        "retry_after": 0,
    }
    if group.routing_strategy_args:
        settings["routing_strategy_args"] = dict(group.routing_strategy_args)
    if fallback_groups:
        settings["fallbacks"] = [{spec.name: fallback_groups}]
        settings["max_fallbacks"] = len(fallback_groups)
    if group.cooldown_time is not None:
        settings["cooldown_time"] = group.cooldown_time
    if group.allowed_fails is not None:
        settings["allowed_fails"] = group.allowed_fails
    return Router(**settings)
