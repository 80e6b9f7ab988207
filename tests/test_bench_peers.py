"""The peer benchmark's server and table (ttc_agents.bench.peers, ttc_agents.bench._canned)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ttc_agents.bench import peers
from ttc_agents.bench._canned import SOLUTION, canned_reply


def chat(*contents: str, **body: object) -> dict[str, object]:
    return {"messages": [{"role": "user", "content": c} for c in contents], **body}


def test_the_canned_server_continues_after_the_last_step_it_is_shown() -> None:
    assert canned_reply(chat("What is 12 * 7 + 5?")) == ("\n".join(SOLUTION), "stop")
    assert canned_reply(chat("Steps so far:\nStep 1: 12 * 7 = 84", stop=["\n"]))[0] == SOLUTION[1]
    # An assistant prefix (its_hub's format) counts as much as the steps in a prompt.
    body = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": SOLUTION[0]}]}
    assert canned_reply({**body, "stop": "\n"})[0] == SOLUTION[1]
    assert canned_reply(chat("\n".join(SOLUTION[:3]), stop=["\n"]))[0] == SOLUTION[3]
    text, finish = canned_reply(chat("q", max_tokens=3))
    assert (text, finish) == ("Step 1: 12", "length")


@pytest.mark.slow
def test_a_short_run_writes_the_table_with_the_goals_ratios(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--out", str(tmp_path), "--n", "4", "--concurrency", "2", "--reps", "1", "--questions", "2"]
    assert peers.main([*argv, "--clients", "ttc,aiohttp"]) == 0
    result = json.loads((tmp_path / "peers.json").read_text())
    lines = {line["method"]: line for line in result["table"]}
    # ttc-agents sends one request with n for best-of-N, and for beam search one for the root's N first
    # steps, then one per kept beam (N/width = 1) in each of the 3 later rounds.
    assert lines["best_of_n"]["ttc_requests"] == pytest.approx(1)
    assert lines["beam"]["ttc_requests"] == pytest.approx(4)
    assert lines["best_of_n"]["ttc_cpu_ms"] > 0 and lines["best_of_n"]["aiohttp_cpu_ms"] > 0
    assert set(result["rss_mb"]) == {"ttc", "aiohttp"}
    assert (tmp_path / "peers.png").stat().st_size > 0
    out = capsys.readouterr().out
    assert "| best_of_n | 4 | 2 |" in out and "peak RSS (MB): ttc" in out


def test_unknown_clients_are_refused() -> None:
    with pytest.raises(SystemExit):
        peers.main(["--clients", "nosuch"])
