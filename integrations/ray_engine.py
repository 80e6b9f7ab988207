"""Batch runs on a Ray cluster: ``ttc batch IN OUT --workflow NAME --engine ray [--address ADDR]``.

Install the extra: ``pip install "ttc-agents[ray]"`` (on the driver and on every node of the cluster).

::

    from pathlib import Path
    from ttc_agents import load_workflow
    from ttc_agents.integrations.ray_engine import run_batch_ray

    workflow = load_workflow("workflows.yaml", "math")
    summary = await run_batch_ray(Path("questions.jsonl"), workflow, out="answers.jsonl",
                                  address="auto", max_concurrency=256)

Who does what
    The driver (the process that calls :func:`run_batch_ray`) does all that the local runner does:
    it reads the input lazily, skips the ids OUT already records (resume), carves every item's
    hard budget out of the total budget, and writes every record as it finishes, as the ONE writer
    of OUT. It is :func:`~ttc_agents.integrations.batch.run_batch_target` itself, so the record
    format, the budget rules and the resume guarantee are those of
    :mod:`ttc_agents.integrations.batch`. The model work happens in Ray async actors (*workers*):
    each builds the workflow once (its own gateway, LiteLLM Routers and HTTP connections) and runs
    up to ``ceil(max_concurrency / workers)`` items at a time; the driver sends each item to the
    least busy worker. For a router workflow under a total budget, the difficulty probes run on the
    workers too, and the driver allocates the budget over each window of probed items by the
    policy's marginal gain, as the local runner does.

Budgets never overspend
    An item runs with the hard budget the driver granted it out of the total; the worker's ledger
    refuses any call that could pass it, and the item's real spend comes back with its record and
    returns the unspent rest to the total. ``max_concurrency`` bounds the items (and so the budget)
    in flight across the whole cluster.

Failures
    An exception in an item becomes its error record, with the same text as the local runner's. A
    worker that dies (its node lost, out of memory) turns its running items into error records
    (``RayActorError: ...``), and Ray restarts it for the next items; ``--retry-errors`` runs them
    again. After ``kill -9`` of the driver the same command resumes as the local runner does.

Ray and the network
    With no ``address``, a local Ray cluster starts in this process (``num_cpus`` CPUs) and stops at
    the end; ``address="auto"`` joins the cluster running on this machine, ``"HOST:6379"`` a
    cluster's head node, ``"ray://HOST:10001"`` a cluster through Ray Client. Usage statistics are
    off (``RAY_USAGE_STATS_ENABLED=0``) unless set otherwise.
"""

from __future__ import annotations

import functools
import math
import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ttc_agents._apps.workflow import Workflow
from ttc_agents._core.budget import Budget, Ledger, LedgerSnapshot
from ttc_agents._routing.difficulty import DifficultyEstimate
from ttc_agents._routing.moves import StrategyState
from ttc_agents._routing.policy import Policy

from ._batch_input import BatchInput
from ._batch_runner import BatchSummary, BatchTarget, RoutedTarget, preflight, run_batch_target

__all__ = ["RAY_ENVIRONMENT", "BatchWorker", "RemoteItemError", "import_ray", "run_batch_ray"]

RAY_ENVIRONMENT: Mapping[str, str] = {
    "RAY_USAGE_STATS_ENABLED": "0",  # no usage report to Anyscale
    "RAY_DISABLE_DOCKER_CPU_WARNING": "1",
}
"""Environment set (unless already set) before Ray is imported."""

_RESULT_KEYS = ("answer", "stopped_by", "strategy", "trace", "ledger")
"""What a worker sends back of a graph's result: what a batch record is made of (not the candidates)."""


class RemoteItemError(Exception):
    """An item's exception that could not travel back from its worker (it does not pickle). It comes
    back as a subclass named like the original, with the original's message, so that the item's error
    record reads as in the local runner."""


@functools.cache
def _stand_in(name: str) -> type[RemoteItemError]:
    return type(name, (RemoteItemError,), {"__module__": __name__})


# ---------------------------------------------------------------------------------------------
# The worker side
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What a worker returns for one call: the value, or the exception (or, if it does not pickle,
    its class name and message)."""

    value: Any = None
    error: BaseException | None = None
    error_type: str | None = None
    error_message: str = ""

    @classmethod
    def failed(cls, exc: Exception) -> _Outcome:
        try:
            pickle.loads(pickle.dumps(exc))
        except Exception:
            return cls(error_type=type(exc).__name__, error_message=str(exc))
        return cls(error=exc.with_traceback(None))

    def unwrap(self) -> Any:
        if self.error is not None:
            raise self.error
        if self.error_type is not None:
            raise _stand_in(self.error_type)(self.error_message)
        return self.value


class BatchWorker:
    """A Ray async actor running one workflow's graph for the driver's items (see the module docs)."""

    def __init__(self, workflow: Workflow, policy: Policy | None, base_dir: str | None) -> None:
        from ttc_agents._core.gc import freeze_after_imports
        from ttc_agents._llm.gateway import get_default_gateway

        gateway = get_default_gateway()
        self.router: Any = None
        if workflow.policy is not None:
            self.router = workflow.router(gateway=gateway, base_dir=base_dir, policy=policy)
            self.graph: Any = self.router.graph
        else:
            self.graph = workflow.build(gateway=gateway, base_dir=base_dir)
        freeze_after_imports()

    def ready(self) -> int:
        """The worker's process id, once it is built."""
        return os.getpid()

    async def invoke(self, request: dict[str, Any]) -> _Outcome:
        """One item through the graph: the parts of its result a record needs."""
        try:
            result = await self.graph.ainvoke(request)
        except Exception as exc:
            return _Outcome.failed(exc)
        if not isinstance(result, Mapping):
            return _Outcome(value=result)  # the driver reports it as the local runner does
        return _Outcome(value={key: result[key] for key in _RESULT_KEYS if key in result})

    async def estimate(self, state: StrategyState, budget: Budget) -> _Outcome:
        """The router's difficulty estimate of one item under ``budget``, with what it spent."""
        ledger = Ledger(budget=budget)
        try:
            estimate = await self.router.estimator.estimate(self.router.ctx, state, ledger)
        except Exception as exc:
            return _Outcome.failed(exc)
        return _Outcome(value=(estimate, ledger.snapshot()))


# ---------------------------------------------------------------------------------------------
# The driver side: stand-ins for the graph and the router that call the workers
# ---------------------------------------------------------------------------------------------


class _Workers:
    """The actors, and how many calls each has in flight (a call goes to the least busy)."""

    def __init__(self, actors: list[Any]) -> None:
        self.actors = actors
        self.load = [0] * len(actors)

    async def call(self, method: str, *args: Any) -> Any:
        index = min(range(len(self.actors)), key=self.load.__getitem__)
        self.load[index] += 1
        try:
            outcome: _Outcome = await getattr(self.actors[index], method).remote(*args)
        finally:
            self.load[index] -= 1
        return outcome.unwrap()


class _RemoteGraph:
    """``ainvoke`` runs the item on a worker."""

    def __init__(self, workers: _Workers) -> None:
        self.workers = workers

    async def ainvoke(self, input: Any, config: Any = None) -> Any:
        return await self.workers.call("invoke", dict(input))


class _RemoteEstimator:
    """The router's estimator, run on a worker; what it spent is booked in the driver's ledger."""

    def __init__(self, name: str, workers: _Workers) -> None:
        self._name = name
        self.workers = workers

    @property
    def name(self) -> str:
        return self._name

    async def estimate(self, ctx: Any, state: StrategyState, ledger: Ledger) -> DifficultyEstimate:
        estimate: DifficultyEstimate
        spent: LedgerSnapshot
        estimate, spent = await self.workers.call("estimate", dict(state), ledger.budget)
        for entry in spent.entries:
            ledger.settle(None, entry.usage, node=entry.node, model=entry.model)
        if spent.stopped_by is not None:
            ledger.stop(spent.stopped_by)
        return estimate


@dataclass(frozen=True, slots=True)
class _RemoteRouter:
    """What the batch's budget allocation needs of the router, with the model work on the workers."""

    policy: Policy
    estimator: _RemoteEstimator
    graph: _RemoteGraph
    ctx: Any = None


# ---------------------------------------------------------------------------------------------
# Running a batch
# ---------------------------------------------------------------------------------------------


def import_ray() -> Any:
    """The ``ray`` module, imported with usage statistics off; a clear error without the extra."""
    for name, value in RAY_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    try:
        import ray
    except ModuleNotFoundError as exc:
        raise RuntimeError('the ray engine needs Ray: pip install "ttc-agents[ray]"') from exc
    return ray


def _connect(ray: Any, address: str | None, num_cpus: int | None, init: Mapping[str, Any] | None) -> bool:
    """Connect to (or start) a Ray cluster; True when this call started the connection."""
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, **(init or {})}
    if address is not None:
        kwargs["address"] = address
    elif num_cpus is not None:
        kwargs["num_cpus"] = num_cpus
    ray.init(**kwargs)
    return True


async def _start_workers(
    ray: Any, workflow: Workflow, policy: Policy | None, base_dir: str | None, count: int, concurrency: int, cpus: float
) -> _Workers:
    actor = ray.remote(BatchWorker).options(
        max_concurrency=concurrency, num_cpus=cpus, max_restarts=3, max_task_retries=0
    )
    actors = [actor.remote(workflow, policy, base_dir) for _ in range(count)]
    try:
        for handle in actors:  # surfaces a worker that cannot build the workflow, before any item runs
            await handle.ready.remote()
    except Exception:
        for handle in actors:
            ray.kill(handle)
        raise
    return _Workers(actors)


async def run_batch_ray(
    items: BatchInput,
    workflow: Workflow,
    *,
    out: str | os.PathLike[str],
    address: str | None = None,
    workers: int | None = None,
    worker_cpus: float = 1.0,
    num_cpus: int | None = None,
    max_concurrency: int = 64,
    per_item_budget: Budget | None = None,
    total_budget: Budget | None = None,
    progress: bool = True,
    resume: bool = True,
    retry_errors: bool = False,
    strict: bool = False,
    policy_window: int = 256,
    base_dir: str | os.PathLike[str] | None = None,
    ray_init: Mapping[str, Any] | None = None,
) -> BatchSummary:
    """Answer every item with ``workflow`` on Ray workers and stream one record per item to ``out``.

    ``address``: the Ray cluster (None starts a local one with ``num_cpus`` CPUs; ``"auto"``, a head
    node's ``HOST:PORT`` or ``ray://HOST:PORT``); an already connected Ray is used as it is.
    ``workers``: the number of actors (default: the cluster's CPUs divided by ``worker_cpus``, the
    CPUs each actor reserves). ``max_concurrency``: items in flight over all workers (each worker
    runs up to ``ceil(max_concurrency / workers)``). ``ray_init``: more keyword arguments for
    ``ray.init``. Everything else is as in :func:`~ttc_agents.integrations.batch.run_batch`.
    """
    if isinstance(items, str | bytes):
        raise TypeError("pass a JSONL file as a Path (a plain string would be read as characters)")
    if max_concurrency < 1:
        raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    # Validate on the driver, before any cluster starts: the workflow builds, its policy loads, its
    # models have providers (and prices, under a USD budget).
    preflight(
        workflow,
        per_item_budget=per_item_budget if per_item_budget is not None else workflow.budget,
        total_budget=total_budget if total_budget is not None else workflow.batch_budget,
    )
    router = workflow.router(base_dir=base_dir) if workflow.policy is not None else None
    if router is None:
        workflow.build(base_dir=base_dir)
    ray = import_ray()
    started = _connect(ray, address, num_cpus, ray_init)
    try:
        if workers is None:
            workers = max(1, int(ray.cluster_resources().get("CPU", 1) // worker_cpus))
        pool = await _start_workers(
            ray,
            workflow,
            None if router is None else router.policy,
            None if base_dir is None else str(Path(base_dir)),
            workers,
            math.ceil(max_concurrency / workers),
            worker_cpus,
        )
        try:
            graph = _RemoteGraph(pool)
            remote: RoutedTarget | None = None
            if router is not None:
                remote = _RemoteRouter(router.policy, _RemoteEstimator(router.estimator.name, pool), graph)
            target = BatchTarget(
                graph if remote is None else remote.graph,
                remote,
                None if workflow.budget.unlimited else workflow.budget,
                workflow.batch_budget,
                workflow.budget_unit or (None if router is None else router.unit),
            )
            return await run_batch_target(
                items,
                target,
                out=out,
                max_concurrency=max_concurrency,
                per_item_budget=per_item_budget,
                total_budget=total_budget,
                progress=progress,
                resume=resume,
                retry_errors=retry_errors,
                strict=strict,
                policy_window=policy_window,
            )
        finally:
            for handle in pool.actors:
                ray.kill(handle)
    finally:
        if started:
            ray.shutdown()
