"""Values and pure functions, no I/O: budgets and the ledger, strategy specs, candidates and answers, safe
arithmetic, matched-compute statistics, checkpoint types.

Private: the public API is re-exported by :mod:`ttc_agents` (see the README's Architecture section)."""
