"""A CLI that starts fast, guarded without timing: ``import ttc_agents``, the ``ttc`` parser, every
``--help``, an argument error and ``ttc doctor`` load none of the heavy libraries (checked on
``sys.modules`` in a fresh interpreter, never on the clock). Also: ``ttc doctor`` never prints a key,
the help texts say what runs, and ``--strategy hybrid --n N`` spends N samples."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from ttc_agents.cli import build_parser, main

HEAVY = ("litellm", "langgraph", "langchain_core", "matplotlib", "numpy")
"""Libraries that take seconds to import together: none of them may load before a command runs."""


def _fresh(code: str, env: dict[str, str] | None = None, unset: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run ``code`` in a new interpreter (environment: ours, updated with ``env``, without the names
    starting with one of ``unset``); it ends by printing a JSON object, which is returned."""
    base = {name: value for name, value in os.environ.items() if not name.startswith(unset or ("\0",))}
    done = subprocess.run(
        [sys.executable, "-c", "import json, sys\n" + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**base, **(env or {})},
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


LOADED = f"sorted({{name.split('.')[0] for name in sys.modules}} & set({HEAVY!r}))"
"""An expression for the code run by :func:`_fresh`: which of :data:`HEAVY` are loaded."""


def test_import_ttc_agents_loads_no_heavy_library_and_sets_the_offline_switches() -> None:
    result = _fresh(
        f"""
        import os
        import ttc_agents
        print(json.dumps({{"loaded": {LOADED}, "cost_map": os.environ.get("LITELLM_LOCAL_MODEL_COST_MAP"),
                           "offline": os.environ.get("LITELLM_OFFLINE_MODE"), "names": len(dir(ttc_agents))}}))
        """,
        unset=("LITELLM_",),
    )
    assert result["loaded"] == []
    # LiteLLM's switches are in the environment before anything can import it through the library.
    assert result["cost_map"] == "True" and result["offline"] == "true"
    assert result["names"] >= 60  # dir() lists the public names before they load


def test_the_offline_switches_do_not_import_litellm_and_leave_a_users_choice() -> None:
    result = _fresh(
        f"""
        import os
        import ttc_agents._llm.offline
        print(json.dumps({{"loaded": {LOADED}, "cost_map": os.environ["LITELLM_LOCAL_MODEL_COST_MAP"]}}))
        """,
        env={"LITELLM_LOCAL_MODEL_COST_MAP": "False"},
    )
    assert result == {"loaded": [], "cost_map": "False"}


def test_public_names_load_on_first_use() -> None:
    result = _fresh(
        f"""
        import ttc_agents
        before = {LOADED}
        from ttc_agents import Budget
        budget_only = {LOADED}
        spec = ttc_agents.HybridSpec(n=4)
        router = ttc_agents.Router
        print(json.dumps({{"before": before, "budget_only": budget_only, "after": {LOADED},
                           "cached": "Router" in vars(ttc_agents), "module": Budget.__module__}}))
        """
    )
    assert result["before"] == [] and result["budget_only"] == []
    assert "langgraph" in result["after"] and result["cached"]
    assert result["module"] == "ttc_agents._core.budget"
    with pytest.raises(AttributeError, match="no attribute 'NoSuchName'"):
        import ttc_agents

        _ = ttc_agents.NoSuchName  # type: ignore[attr-defined]


def test_legacy_checkpoint_modules_are_aliases_imported_on_demand() -> None:
    result = _fresh(
        """
        import importlib
        import ttc_agents
        before = sorted(name for name in sys.modules if name.startswith("ttc_agents._budget"))
        legacy = importlib.import_module("ttc_agents._budget")
        current = importlib.import_module("ttc_agents._core.budget")
        print(json.dumps({"before": before, "same": legacy is current, "spec": current.__spec__.name,
                          "budget": legacy.Budget is current.Budget}))
        """
    )
    assert result == {"before": [], "same": True, "spec": "ttc_agents._core.budget", "budget": True}


def test_parser_every_help_and_argument_errors_load_no_heavy_library() -> None:
    result = _fresh(
        f"""
        import contextlib, io
        from ttc_agents.cli import build_parser, main
        parser = build_parser()
        commands = sorted(parser._subparsers._group_actions[0].choices)
        codes = {{}}
        for argv in [["--help"], *[[name, "--help"] for name in commands], ["solve"], ["solve", "q", "--n", "0"],
                     ["nope"]]:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                try:
                    main(argv)
                except SystemExit as exit:
                    codes[" ".join(argv)] = exit.code
        print(json.dumps({{"loaded": {LOADED}, "commands": commands, "codes": codes}}))
        """
    )
    assert result["loaded"] == []
    assert {"batch", "bench", "calibrate", "demo", "doctor", "serve-local", "solve"} <= set(result["commands"])
    codes = result["codes"]
    assert all(code == 0 for argv, code in codes.items() if argv.endswith("--help"))
    assert codes["solve"] == codes["solve q --n 0"] == codes["nope"] == 2


# -- ttc doctor ------------------------------------------------------------------------------------------


def test_doctor_says_which_keys_are_set_and_never_prints_one() -> None:
    secret = "sk-doctor-test-0123456789abcdef"
    result = _fresh(
        f"""
        import contextlib, io
        from ttc_agents.cli import main
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(["doctor"])
        print(json.dumps({{"loaded": {LOADED}, "code": code, "out": out.getvalue()}}))
        """,
        env={"OPENAI_API_KEY": secret, "ANTHROPIC_API_KEY": "", "ANTHROPIC_AUTH_TOKEN": "", "GEMINI_API_KEY": " "},
    )
    out = result["out"]
    assert result["code"] == 0 and result["loaded"] == []
    assert secret not in out and secret[:12] not in out and secret[-8:] not in out
    set_line = next(line for line in out.splitlines() if line.strip().startswith("set:"))
    unset_line = next(line for line in out.splitlines() if line.strip().startswith("not set:"))
    assert "openai (OPENAI_API_KEY)" in set_line
    assert "anthropic" in unset_line and "gemini" in unset_line  # empty or blank is not set
    for what in ("local", "datasets", "ray", "dev", "unshare -n", "make demo", "make test"):
        assert what in out, what
    assert "llama.cpp server" in out or "no llama.cpp server" in out


def test_doctor_prints_no_key_of_any_provider(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ttc_agents._llm.errors import PROVIDER_KEYS

    values = {}
    for provider, names in PROVIDER_KEYS.items():
        for i, name in enumerate(names):
            values[name] = f"fake-{provider}-{i}-value-9f8e7d"
            monkeypatch.setenv(name, values[name])
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert not [value for value in values.values() if value in out]
    assert "fake-" not in out and "9f8e7d" not in out
    assert "not set: none" in out


# -- help texts say what runs ---------------------------------------------------------------------------


def _help(*argv: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit:
        main([*argv, "--help"])
    assert exit.value.code == 0
    return capsys.readouterr().out


def test_demo_help_states_the_defaults_that_run(capsys: pytest.CaptureFixture[str]) -> None:
    from ttc_agents._apps.demo import DEFAULT_MODEL, DemoSettings
    from ttc_agents.cli import demo

    assert DemoSettings().questions_per_level == demo.QUESTIONS_PER_LEVEL
    assert DemoSettings().budgets == demo.BUDGETS
    assert DemoSettings.quick().questions_per_level == demo.QUICK_QUESTIONS_PER_LEVEL
    assert DemoSettings.quick().budgets == demo.QUICK_BUDGETS
    text = " ".join(_help("demo", capsys=capsys).split())
    assert f"N = {', '.join(map(str, DemoSettings().budgets))}" in text
    assert f"default: {DemoSettings().questions_per_level}, --quick: {DemoSettings.quick().questions_per_level}" in text
    assert DEFAULT_MODEL in text


def test_solve_help_states_every_strategys_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    from ttc_agents._core.specs import BeamSearchSpec, BestOfNSpec, DVTSSpec, HybridSpec, RevisionSpec

    text = _help("solve", capsys=capsys)
    assert text.count("--n [16]") == 4 and BestOfNSpec().n == BeamSearchSpec().n == DVTSSpec().n == HybridSpec().n == 16
    assert f"--selection naive|weighted|majority [{BestOfNSpec().selection}]" in text
    assert f"--width [{BeamSearchSpec().width}]" in text and f"--lookahead [{BeamSearchSpec().lookahead}]" in text
    assert f"--max-rounds [{BeamSearchSpec().max_rounds}]" in text
    assert f"--attempts [{RevisionSpec().attempts}]" in text and f"--chains [{RevisionSpec().chains}]" in text
    assert f"--ratio [{HybridSpec().sequential_ratio}]" in text
    assert f"--temperature [{BestOfNSpec().temperature}]" in text
    assert "ratio 1 -> {} x {}".format(*HybridSpec(n=8, sequential_ratio=1).shape) in text
    assert "ratio 2 -> {} x {}".format(*HybridSpec(n=8, sequential_ratio=2).shape) in " ".join(text.split())
    parser = build_parser()
    solve = parser._subparsers._group_actions[0].choices["solve"]  # type: ignore[union-attr]
    assert [a.dest for a in solve._actions if not a.help and a.dest != "debug"] == []


def test_every_option_has_a_help_text_and_every_command_a_description() -> None:
    parser = build_parser()
    for name, command in parser._subparsers._group_actions[0].choices.items():  # type: ignore[union-attr]
        assert command.description, name
        undocumented = [action.dest for action in command._actions if not action.help]
        assert undocumented == [], f"ttc {name}: options without help: {undocumented}"


def test_bench_help_is_plain_text(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help("bench", capsys=capsys)
    assert "``" not in text and ":mod:" not in text and ":func:" not in text
    assert "results.jsonl" in text and "report.md" in text


def test_batch_help_names_the_keys_of_an_input_line(capsys: pytest.CaptureFixture[str]) -> None:
    from ttc_agents.integrations._batch_input import _KNOWN_FIELDS

    text = _help("batch", capsys=capsys)
    for key in _KNOWN_FIELDS:
        assert f"\n  {key} " in text, key
    assert "required" in text and "metadata" in text


# -- hybrid: N means N samples ----------------------------------------------------------------------------


@pytest.mark.parametrize("n", range(1, 33))
@pytest.mark.parametrize("ratio", [0.25, 0.5, 1.0, 2.0, 3.0, 4.0])
def test_hybrid_shape_spends_exactly_n(n: int, ratio: float) -> None:
    from ttc_agents._core.specs import HybridSpec

    parallel, sequential = HybridSpec(n=n, sequential_ratio=ratio).shape
    assert parallel * sequential == n


def test_hybrid_shape_follows_the_ratio() -> None:
    from ttc_agents._core.specs import HybridSpec

    assert HybridSpec(n=8, sequential_ratio=1).shape == (4, 2)  # was (2, 3): 6 samples for N = 8
    assert HybridSpec(n=8, sequential_ratio=2).shape == (2, 4)
    assert HybridSpec(n=16, sequential_ratio=1).shape == (4, 4)
    assert HybridSpec(n=6, sequential_ratio=1).shape == (3, 2)  # a tie goes to the more parallel shape
    assert HybridSpec(n=12, sequential_ratio=0.75).shape == (4, 3)
    assert HybridSpec(n=7, sequential_ratio=1).shape == (7, 1)


def test_solve_hybrid_n8_ratio1_spends_8_samples(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["solve", "What is 12*7?", "--model", "scripted/arith", "--strategy", "hybrid", "--n", "8"]
    assert main([*argv, "--ratio", "1", "--seed", "0", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["usage"]["samples"] == 8
    assert {(c["chain"], c["attempt"]) for c in payload["candidates"]} == {(c, a) for c in range(4) for a in range(2)}
    assert main([*argv, "--ratio", "1", "--seed", "0"]) == 0
    assert "hybrid, 4 chains x 2 attempts: 8 samples" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--strategy", "hybrid", "--attempts", "2"], "--attempts: not a flag of --strategy hybrid"),
        (["--strategy", "hybrid", "--chains", "2"], "--chains: not a flag of --strategy hybrid"),
        (["--strategy", "best_of_n", "--width", "2", "--max-rounds", "3"], "--width, --max-rounds: not a flag"),
        (["--strategy", "revision", "--ratio", "2"], "--ratio: not a flag of --strategy revision, which takes --n"),
        (["--strategy", "revision", "--n", "3", "--attempts", "4"], "--n and --attempts"),
    ],
)
def test_solve_rejects_flags_the_strategy_does_not_have(
    flags: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["solve", "q", "--model", "scripted/arith", *flags]) == 1
    err = capsys.readouterr().err
    assert named in err and len(err.strip().splitlines()) == 1
