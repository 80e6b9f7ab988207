"""Model I/O: the one gateway on LiteLLM, retries, providers and resolvers, model specs, deployment groups, the
record/replay store, secrets masking, the embedded local server, the scripted test double and its synthetic
populations.

Private: the public API is re-exported by :mod:`ttc_agents` (see the README's Architecture section)."""
