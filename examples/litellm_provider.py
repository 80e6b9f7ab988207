"""Workflows as LiteLLM models: `litellm.completion(model="ttc/<workflow>")`, offline.

    python examples/litellm_provider.py

The same handler serves the LiteLLM proxy (config.yaml)::

    model_list:
      - model_name: offline-beam
        litellm_params: {model: ttc/offline-beam}
    litellm_settings:
      custom_provider_map:
        - {"provider": "ttc", "custom_handler": ttc_agents.integrations.litellm_provider.ttc_provider}

    TTC_WORKFLOWS=workflows.yaml litellm --config config.yaml
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import litellm

from ttc_agents.integrations.litellm_provider import register_ttc_provider

WORKFLOWS = """
workflows:
  offline-beam:
    models: {main: scripted/arith}
    verifier: arithmetic
    strategy: {strategy: beam_search, n: 8, width: 2, seed: 0}
    budget: {max_samples: 64}
  offline-judged:
    models: {main: scripted/arith}
    verifier: prm:scripted/arith        # an LLM judge: its calls count in `usage` too
    strategy: {strategy: best_of_n, n: 8, seed: 0}
"""
QUESTION = "What is 48 * 17 - 23 * 9 + 310?"


async def run_async() -> None:
    messages = [{"role": "user", "content": QUESTION}]
    response = await litellm.acompletion(model="ttc/offline-beam", messages=messages)
    ttc = response._hidden_params["ttc"]
    print(f"ttc/offline-beam   -> {response.choices[0].message.content}  usage={_usage(response)}")
    print(f"                      strategy={ttc['strategy']['strategy']} samples={ttc['ledger']['total']['samples']}")

    response = await litellm.acompletion(model="ttc/offline-judged", messages=messages, budget={"max_tokens": 20000})
    calls = {e["node"]: e["calls"] for e in response._hidden_params["ttc"]["ledger"]["entries"]}
    print(f"ttc/offline-judged -> {response.choices[0].message.content}  usage={_usage(response)}  calls={calls}")

    stream = await litellm.acompletion(model="ttc/offline-beam", messages=messages, stream=True)
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            print(f"streamed           -> {chunk.choices[0].delta.content}")


def run_sync() -> None:
    response = litellm.completion(model="ttc/offline-beam", messages=[{"role": "user", "content": "What is 7 * 8?"}])
    print(f"sync completion    -> {response.choices[0].message.content}  usage={_usage(response)}")


def _usage(response: Any) -> dict[str, int]:
    usage = response.usage
    return {"prompt": usage.prompt_tokens, "completion": usage.completion_tokens, "total": usage.total_tokens}


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as directory:
        file = Path(directory) / "workflows.yaml"
        file.write_text(WORKFLOWS)
        register_ttc_provider(file)
        asyncio.run(run_async())
        run_sync()
