"""Network hygiene: importing the package (every module of it) makes no outside connection, and completes.

The import runs in a fresh interpreter whose ``sitecustomize`` blocks and records every non-loopback
``connect``/``connect_ex``/``sendto`` and every name lookup of a non-loopback host, with LiteLLM's
offline switches removed from the environment (the package must set them itself). Where the machine
allows it the same import also runs inside a loopback-only network namespace (``unshare -n``), where
any outside connection fails at once. The import time is reported, with only a generous DoS bound.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SITECUSTOMIZE = textwrap.dedent(
    '''
    """Installed by test_network_hygiene: block and record outside connections and name lookups."""
    import ipaddress
    import json
    import os
    import socket

    _LOG = os.environ["TTC_NET_LOG"]
    _LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", ""}


    def _is_local(host):
        if host is None:
            return True
        if isinstance(host, bytes):
            host = host.decode(errors="replace")
        host = str(host).split("%", 1)[0]
        try:
            return ipaddress.ip_address(host).is_loopback or ipaddress.ip_address(host).is_unspecified
        except ValueError:
            return host.lower() in _LOCAL_NAMES


    def _refuse(kind, target):
        with open(_LOG, "a", encoding="utf-8") as log:
            log.write(json.dumps([kind, repr(target)]) + "\\n")
        raise OSError(101, f"outside network blocked by the test: {kind} {target!r}")


    def _guard(method, kind):
        def guarded(self, address, *args):
            if self.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple):
                if not _is_local(address[0]):
                    _refuse(kind, address)
            return method(self, address, *args)

        return guarded


    def _guard_sendto(method):
        def guarded(self, data, *args):
            address = args[-1] if args else None
            if self.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple):
                if not _is_local(address[0]):
                    _refuse("sendto", address)
            return method(self, data, *args)

        return guarded


    _getaddrinfo = socket.getaddrinfo


    def getaddrinfo(host, *args, **kwargs):
        if not _is_local(host):
            with open(_LOG, "a", encoding="utf-8") as log:
                log.write(json.dumps(["getaddrinfo", repr(host)]) + "\\n")
            raise socket.gaierror(socket.EAI_NONAME, f"name lookups blocked by the test: {host!r}")
        return _getaddrinfo(host, *args, **kwargs)


    socket.socket.connect = _guard(socket.socket.connect, "connect")
    socket.socket.connect_ex = _guard(socket.socket.connect_ex, "connect_ex")
    socket.socket.sendto = _guard_sendto(socket.socket.sendto)
    socket.getaddrinfo = getaddrinfo
    '''
)

IMPORT_EVERYTHING = textwrap.dedent(
    """
    import importlib, json, pkgutil, sys, time
    started = time.perf_counter()
    import ttc_agents
    first = time.perf_counter() - started
    failed = {}
    names = ["ttc_agents"]
    for info in pkgutil.walk_packages(ttc_agents.__path__, "ttc_agents."):
        names.append(info.name)
        try:
            importlib.import_module(info.name)
        except Exception as error:
            failed[info.name] = f"{type(error).__name__}: {error}"
    for sub in ("graphs", "prompts", "integrations", "verifiers", "testing", "cli"):
        package = importlib.import_module("ttc_agents." + sub)
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name not in names:
                names.append(info.name)
                try:
                    importlib.import_module(info.name)
                except Exception as error:
                    failed[info.name] = f"{type(error).__name__}: {error}"
    from ttc_agents.cli import main
    try:
        main(["--help"])
    except SystemExit:
        pass
    total = time.perf_counter() - started
    print(json.dumps({"first": first, "total": total, "modules": len(names), "failed": failed}))
    """
)

DOS_BOUND = 180.0
"""Seconds before a hung import subprocess is killed: a guard against hangs, not a timing check."""


def guarded_env(tmp_path: Path) -> tuple[dict[str, str], Path]:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    log = tmp_path / "network.log"
    log.touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LITELLM_", "LANGSMITH_", "LANGCHAIN_"))}
    env.update(
        PYTHONPATH=os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])]),
        TTC_NET_LOG=str(log),
        PYTHONDONTWRITEBYTECODE="1",
        # Proxies would make every connection a connection to the proxy host.
        NO_PROXY="*",
    )
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        env.pop(proxy, None)
    return env, log


def run_import(command: list[str], env: dict[str, str], cwd: Path) -> dict[str, object]:
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=DOS_BOUND)
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def test_the_guard_blocks_and_records_an_outside_connection(tmp_path: Path) -> None:
    """The guard itself works: an outside connect is refused and recorded, loopback is not."""
    env, log = guarded_env(tmp_path)
    probe = (
        "import socket\n"
        "s = socket.socket(); s.settimeout(1)\n"
        "try:\n    s.connect(('192.0.2.1', 80))\nexcept OSError as e:\n    print('blocked', e.errno)\n"
        "try:\n    socket.getaddrinfo('example.com', 443)\nexcept socket.gaierror:\n    print('no lookup')\n"
        "l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen()\n"
        "c = socket.create_connection(l.getsockname()); print('loopback ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["blocked", "101", "no", "lookup", "loopback", "ok"]
    attempts = [json.loads(line) for line in log.read_text().splitlines()]
    assert [kind for kind, _ in attempts] == ["connect", "getaddrinfo"]


def test_the_guard_catches_what_the_package_prevents(tmp_path: Path) -> None:
    """Bare ``import litellm`` without the offline switches tries to fetch LiteLLM's cost map: the guard sees
    it. Importing the package (next test) sets the switches first, so the same guard sees nothing."""
    env, log = guarded_env(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", "import litellm"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=DOS_BOUND,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    attempts = [json.loads(line) for line in log.read_text().splitlines()]
    assert attempts and all(kind in ("getaddrinfo", "connect") for kind, _ in attempts)


def test_importing_every_module_makes_no_outside_connection(tmp_path: Path) -> None:
    env, log = guarded_env(tmp_path)
    report = run_import([sys.executable, "-c", IMPORT_EVERYTHING], env, tmp_path)
    attempts = log.read_text().splitlines()
    assert attempts == [], f"outside network attempts during import: {attempts}"
    assert report["failed"] == {}, report["failed"]
    print(
        f"\nimport ttc_agents: {report['first']:.2f} s; all {report['modules']} modules and `ttc --help`: "
        f"{report['total']:.2f} s, no outside connection attempted"
    )


def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    try:
        return subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.mark.skipif(not _unshare_works(), reason="unshare -n is not permitted here")
def test_importing_in_a_loopback_only_namespace(tmp_path: Path) -> None:
    """Inside ``unshare -n`` nothing outside is reachable: the import must still complete, attempt nothing."""
    env, log = guarded_env(tmp_path)
    report = run_import(["unshare", "-n", sys.executable, "-c", IMPORT_EVERYTHING], env, tmp_path)
    assert log.read_text().splitlines() == []
    assert report["failed"] == {}
    print(f"\nimport in a network namespace: {report['total']:.2f} s for {report['modules']} modules")
