"""The wheel installs ttc_agents with graphs/, prompts/ and integrations/ inside one namespace."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SMOKE = """
import asyncio, json, ttc_agents
from ttc_agents import BestOfNSpec, build_strategy_graph
from ttc_agents.prompts import load_prompt
import ttc_agents.integrations
graph = build_strategy_graph(BestOfNSpec(n=4, seed=0), model="scripted/arith")
result = asyncio.run(graph.ainvoke({"question": "What is 6 * 7?"}))
print(json.dumps({"file": ttc_agents.__file__, "answer": result["answer"],
                  "prompt": load_prompt("judge-step").template[:40]}))
"""


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_virtualenv(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-w", str(dist)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = dist.glob("ttc_agents-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "ttc_agents/graphs/beam_search.py" in names
    assert "ttc_agents/prompts/judge_step.txt" in names
    assert "ttc_agents/py.typed" in names
    assert not any(n.split("/")[0] in {"graphs", "prompts", "integrations"} for n in names)

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    # The dependencies come from this environment (no index is reachable in the test sandbox); a
    # plain path in a .pth file does not run that environment's own .pth hooks (its editable install).
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    out = subprocess.run([python, "-c", SMOKE], check=True, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    import json

    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["file"].startswith(str(site))
    assert result["answer"] == "42"
    assert result["prompt"].startswith("You are checking")
