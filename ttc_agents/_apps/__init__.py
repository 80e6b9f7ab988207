"""Applications: workflows, calibration, datasets and loaders, ttc bench, the demo.

Private: the public API is re-exported by :mod:`ttc_agents` (see the README's Architecture section)."""
