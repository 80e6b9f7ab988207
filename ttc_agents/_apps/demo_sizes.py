"""How big ``ttc demo`` is: the one place its sizes live, light enough for the CLI's help to import."""

from __future__ import annotations

from pathlib import Path
from typing import Final

__all__ = ["BUDGETS", "OUT", "QUESTIONS_PER_LEVEL", "QUICK_BUDGETS", "QUICK_OUT", "QUICK_QUESTIONS_PER_LEVEL"]

QUESTIONS_PER_LEVEL: Final = 10
"""Questions per level of ``ttc demo`` (half of them held out)."""
BUDGETS: Final = (1, 2, 4)
"""Generation budgets N of ``ttc demo``."""
QUICK_QUESTIONS_PER_LEVEL: Final = 2
"""Questions per level of ``ttc demo --quick``."""
QUICK_BUDGETS: Final = (1, 4)
"""Generation budgets N of ``ttc demo --quick``."""
OUT: Final = Path("ttc-demo")
"""Where ``ttc demo`` writes its table, plot and response store."""
QUICK_OUT: Final = Path("ttc-demo-quick")
"""Where ``ttc demo --quick`` writes them: a quick run never overwrites a full run's results."""
