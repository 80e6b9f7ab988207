"""Benchmarks that measure (never assert): orchestration overhead, accuracy against compute.

Each is a module run with ``python -m``: :mod:`ttc_agents.bench.overhead` (the library against the raw
``openai`` client on a loopback server), :mod:`ttc_agents.bench.router_eval` (the router against
best-of-N at matched compute) and :mod:`ttc_agents.bench.scale` (router groups and batch engines).
The accuracy-vs-compute benchmark of the paper's figures is ``ttc bench``. This package exports no names.
"""

__all__: list[str] = []
