"""Budget validation and the ledger's reservations: limits are hard, n shrinks to fit."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ttc_agents import Budget, Ledger, Usage


@pytest.mark.parametrize("field", ["max_samples", "max_tokens", "max_usd", "max_flops", "max_seconds"])
@pytest.mark.parametrize("value", [0, -1])
def test_non_positive_limits_are_rejected_naming_the_field(field: str, value: int) -> None:
    with pytest.raises(ValidationError) as info:
        Budget(**{field: value})
    assert field in str(info.value)


def test_unset_limits_mean_unlimited() -> None:
    assert Budget().unlimited
    ledger = Ledger()
    reservation = ledger.reserve(10_000, prompt_tokens=10**6, max_completion_tokens=10**6)
    assert reservation is not None and reservation.n == 10_000


def test_sample_limit_shrinks_n_then_stops() -> None:
    ledger = Ledger(Budget(max_samples=5))
    first = ledger.reserve(4, prompt_tokens=10, max_completion_tokens=10)
    assert first is not None and first.n == 4 and ledger.stopped_by is None
    second = ledger.reserve(4, prompt_tokens=10, max_completion_tokens=10)
    assert second is not None and second.n == 1
    assert ledger.stopped_by == "max_samples"
    assert ledger.reserve(1, prompt_tokens=10, max_completion_tokens=10) is None


def test_token_limit_counts_prompt_and_worst_case_completion() -> None:
    ledger = Ledger(Budget(max_tokens=100))
    reservation = ledger.reserve(10, prompt_tokens=40, max_completion_tokens=20)
    assert reservation is not None and reservation.n == 3  # 40 + 3 x 20 <= 100 < 40 + 4 x 20
    ledger.settle(reservation, Usage(calls=1, samples=3, prompt_tokens=30, completion_tokens=15), node="a", model="m")
    assert ledger.total.total_tokens == 45
    # 55 tokens left: the prompt bound 40 leaves room for no 20-token completion.
    assert ledger.reserve(1, prompt_tokens=40, max_completion_tokens=20) is None
    assert ledger.stopped_by == "max_tokens"


def test_usd_limit_needs_a_price() -> None:
    ledger = Ledger(Budget(max_usd=1.0))
    with pytest.raises(ValueError, match="price"):
        ledger.reserve(1, prompt_tokens=1, max_completion_tokens=1)
    reservation = ledger.reserve(
        100,
        prompt_tokens=1000,
        max_completion_tokens=100,
        usd_per_prompt_token=1e-4,
        usd_per_completion_token=1e-3,
    )
    assert reservation is not None and reservation.n == 9  # 0.1 + 9 x 0.1 <= 1.0


def test_time_limit_refuses_new_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    ledger = Ledger(Budget(max_seconds=5), started_at=0.0)
    monkeypatch.setattr("time.time", lambda: 6.0)
    assert ledger.reserve(1, prompt_tokens=1, max_completion_tokens=1) is None
    assert ledger.stopped_by == "max_seconds"


def test_release_returns_the_hold() -> None:
    ledger = Ledger(Budget(max_samples=2))
    held = ledger.reserve(2, prompt_tokens=1, max_completion_tokens=1)
    assert held is not None
    assert ledger.reserve(1, prompt_tokens=1, max_completion_tokens=1) is None
    ledger.release(held)
    ledger.stopped_by = None
    assert ledger.reserve(2, prompt_tokens=1, max_completion_tokens=1) is not None


def test_snapshot_round_trip_keeps_spend_per_node_and_model() -> None:
    ledger = Ledger(Budget(max_samples=10))
    ledger.settle(None, Usage(calls=1, samples=2, prompt_tokens=5), node="generate", model="a")
    ledger.settle(None, Usage(calls=1, samples=1, completion_tokens=7), node="verify", model="b")
    resumed = Ledger.resume(ledger.snapshot())
    assert resumed.total == ledger.total
    assert resumed.snapshot().by_node()["verify"].completion_tokens == 7
    assert resumed.snapshot().by_model()["a"].samples == 2
    assert resumed.budget.max_samples == 10


def test_scaled_budget() -> None:
    budget = Budget(max_samples=10, max_usd=1.0).scaled(0.25)
    assert budget.max_samples == 2 and budget.max_usd == 0.25 and budget.max_tokens is None
