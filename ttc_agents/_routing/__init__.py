"""Search and routing: the moves every strategy graph is made of, difficulty estimation, the calibrated policy,
budget allocation across questions.

Private: the public API is re-exported by :mod:`ttc_agents` (see the README's Architecture section)."""
