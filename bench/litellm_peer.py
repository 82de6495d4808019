"""LiteLLM Proxy as the peer: installed by `make bench-peers` into
.venv-litellm, run with no database and one worker against the same
upstreams, with its own CLI (as its documentation starts it)."""

from __future__ import annotations

from pathlib import Path

MASTER_KEY = "sk-bench-litellm-master"


def config(tmp: Path, instant_base: str, stream_base: str) -> Path:
    # One model per upstream, all through LiteLLM's OpenAI provider. No
    # database_url: LiteLLM then checks only the master key and skips spend
    # logging (its lightest setup).
    models = [("bench-instant", instant_base), ("bench-stream", stream_base), ("bench-slow", stream_base)]
    lines = ["model_list:"]
    for name, base in models:
        lines += [
            f"  - model_name: {name}",
            "    litellm_params:",
            f"      model: openai/{name}",
            f"      api_base: {base}",
            "      api_key: sk-upstream-bench",
        ]
    lines += ["general_settings:", f"  master_key: {MASTER_KEY}", ""]
    path = tmp / "litellm.yaml"
    path.write_text("\n".join(lines))
    return path


def version(venv: Path) -> str | None:
    for dist in (venv / "lib").glob("python3*/site-packages/litellm-*.dist-info"):
        return dist.name.removeprefix("litellm-").removesuffix(".dist-info")
    return None
