"""The README's LiteLLM proxy path, as a user runs it: ``litellm --config`` serving a ttc workflow.

The proxy (the ``proxy`` extra) runs in a subprocess on 127.0.0.1 with the config of the README, a
master key, and an offline workflow (``scripted/arith``); an OpenAI-style request with the key gets the
workflow's answer and its summed usage, and one without the key is refused. The server is stopped by
its PID (its process group) at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

for _module in ("backoff", "apscheduler", "fastapi_sso", "expression", "multipart"):
    pytest.importorskip(_module, reason="the LiteLLM proxy needs `pip install -e '.[proxy]'`")

pytestmark = pytest.mark.slow

STARTUP_SECONDS = 180
MASTER_KEY = "sk-ttc-proxy-test-0123456789abcdef0123456789abcdef"
CONFIG = """
model_list:
  - model_name: math
    litellm_params: {model: ttc/offline-beam}
litellm_settings:
  custom_provider_map:
    - {"provider": "ttc", "custom_handler": ttc_agents.integrations.litellm_provider.ttc_provider}
"""
WORKFLOWS = """
workflows:
  offline-beam:
    models: {main: scripted/arith}
    verifier: arithmetic
    strategy: {strategy: beam_search, n: 4, width: 2, seed: 0}
    budget: {max_samples: 40}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``litellm --config`` on 127.0.0.1 in a scratch directory; yields its URL; stopped by PID."""
    work = tmp_path_factory.mktemp("litellm-proxy")
    (work / "config.yaml").write_text(CONFIG)
    (work / "workflows.yaml").write_text(WORKFLOWS)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TTC_", "LITELLM_", "OPENAI_"))}
    env.update(
        TTC_WORKFLOWS=str(work / "workflows.yaml"),
        LITELLM_MASTER_KEY=MASTER_KEY,
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        LITELLM_TELEMETRY="False",
        PYTHONUNBUFFERED="1",
    )
    port = _free_port()
    cli = shutil.which("litellm", path=str(Path(sys.executable).parent))
    assert cli is not None, "the litellm console script is not installed next to this interpreter"
    log_path = work / "proxy.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [cli, "--config", str(work / "config.yaml"), "--host", "127.0.0.1", "--port", str(port)],
            cwd=work,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"litellm --config exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health/liveliness", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"litellm --config did not start:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.5)
        yield url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=20)


def _chat(url: str, key: str | None) -> tuple[int, dict[str, object]]:
    body = {"model": "math", "messages": [{"role": "user", "content": "What is 12 * 7 + 5?"}]}
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    request = urllib.request.Request(f"{url}/v1/chat/completions", data=json.dumps(body).encode(), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def test_the_proxy_serves_a_workflow_with_its_summed_usage(proxy: str) -> None:
    status, reply = _chat(proxy, MASTER_KEY)
    assert status == 200, reply
    choices = reply["choices"]
    assert isinstance(choices, list) and choices[0]["message"]["content"] == "89"
    usage = reply["usage"]
    assert isinstance(usage, dict) and usage["completion_tokens"] > 0 and usage["prompt_tokens"] > 0


def test_the_proxy_refuses_a_client_without_the_key(proxy: str) -> None:
    status, _ = _chat(proxy, None)
    assert status in (401, 403)
