"""``ttc bench``: the paper's accuracy-vs-compute curves on your own model and data.

For every question and every sampling seed (a *unit*), :func:`run_bench` measures every strategy at
every generation budget N through :func:`~ttc_agents._apps.calibrate.run_grid` (one sample pool per
question: best-of-N at every N is read from it and charged what a best-of-N run alone would
cost), and, when a calibrated policy is given, the compute-optimal router at each N (the router's
``generation_budget`` input; its difficulty probe is included in its cost). It writes, in the
output directory:

``results.jsonl``
    one line per question x setting x seed: the answer, the reference, correctness, what it cost
    (samples, tokens, USD, FLOPs), and the question's difficulty statistics. Lines are appended
    per finished unit, so an interrupted run resumes where it stopped: finished units are skipped,
    a unit whose lines were cut short is run again, and a partial last line is removed.
``summary.json``
    per setting (strategy x N): accuracy and mean samples, tokens, USD and FLOPs per question,
    each as the mean over seeds with a 95% t-interval over seeds (``ci``, null with one seed),
    and for accuracy also a 95% bootstrap interval over questions (``ci_questions``, which stays
    informative with few seeds); the same per difficulty bin; and what the run cost against
    running every cell on its own.
``accuracy_vs_tokens.png``, ``accuracy_vs_samples.png``, ``difficulty_vs_tokens.png``, ``difficulty_vs_samples.png``
    accuracy against tokens per question and against the generation budget N, per strategy,
    overall and with one panel per difficulty bin, in the style of the paper's figures.
``report.md``
    the tables and the plots.
``responses.sqlite``
    the record/replay store (unless ``store=False``): a re-run or a resumed unit replays every
    recorded sample instead of paying for it again. Adding seeds or questions runs only the new
    units; adding a budget re-runs every unit, replaying what the recorded runs share with it (a
    budget above the largest draws a new, larger sample pool).
``bench.json``
    what the directory measures (dataset, model, verifier, probe size); a run with other values
    is refused, so results of different setups never mix.

Difficulty bins are the data's levels when every problem has one (MATH's ``level``, the graded
arithmetic set's level), else five quantile bins of each question's pass@1 in its sample pools
(the paper's oracle difficulty), bin 1 being the easiest.

Seeds: unit seed ``s`` runs the grid with sampling seed ``s``. The router's strategies use the
same seed (so its search and best-of-N runs replay the grid's samples from the store, a paired
comparison), and its difficulty probe uses ``s + ROUTER_PROBE_SEED_OFFSET``, so that the probe
samples, which join best-of-N's candidates, are not copies of the samples drawn after them.

The code: :mod:`ttc_agents._apps.bench_runner` (the units, resume, the manifest),
:mod:`ttc_agents._apps.bench_results` (``results.jsonl``), :mod:`ttc_agents._apps.bench_stats` (the summary's
statistics) and :mod:`ttc_agents._apps.bench_report` (text, plots, report); this module keeps the names.
"""

from __future__ import annotations

from ttc_agents._apps.bench_report import format_summary, write_outputs
from ttc_agents._apps.bench_results import PLOTS as PLOTS
from ttc_agents._apps.bench_results import load_results
from ttc_agents._apps.bench_runner import (
    BENCH_STRATEGIES,
    ROUTER_PROBE_SEED_OFFSET,
    BenchConfig,
    BenchError,
    BenchResult,
    BenchUnitError,
    run_bench,
    setting_of,
)
from ttc_agents._apps.bench_stats import _interval as _interval
from ttc_agents._apps.bench_stats import _t975 as _t975
from ttc_agents._apps.bench_stats import matched_rows as matched_rows
from ttc_agents._apps.bench_stats import summarize

__all__ = [
    "BENCH_STRATEGIES",
    "ROUTER_PROBE_SEED_OFFSET",
    "BenchConfig",
    "BenchError",
    "BenchResult",
    "BenchUnitError",
    "format_summary",
    "load_results",
    "run_bench",
    "setting_of",
    "summarize",
    "write_outputs",
]
