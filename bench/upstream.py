"""The instant upstream: nginx answering every chat completion with one fixed
OpenAI-shaped body, and every Anthropic Messages request with one fixed
message, so the upstream costs next to nothing and what is measured is the
relay."""

from __future__ import annotations

import json
from pathlib import Path

# An OpenAI chat.completion as the API returns it (fields per the API
# reference), with usage so gateways can bill without estimating.
COMPLETION = {
    "id": "chatcmpl-bench000000000000000000000001",
    "object": "chat.completion",
    "created": 1735689600,
    "model": "bench-instant",
    "system_fingerprint": "fp_bench",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello! How can I help you today?", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 14,
        "completion_tokens": 9,
        "total_tokens": 23,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    },
}


# An Anthropic message as the Messages API returns it, with its usage.
MESSAGE = {
    "id": "msg_01BenchInstant000000000001",
    "type": "message",
    "role": "assistant",
    "model": "bench-claude",
    "content": [{"type": "text", "text": "Hello! How can I help you today?"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 14, "output_tokens": 9, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
}


def nginx_config(tmp: Path, port: int, cpu: int | None) -> Path:
    """Write nginx.conf into ``tmp``: one worker, no access log, runs in the
    foreground (``daemon off``) so the driver owns its lifetime."""
    body = json.dumps(COMPLETION, separators=(",", ":"))
    message = json.dumps(MESSAGE, separators=(",", ":"))
    assert "'" not in body + message  # the bodies sit in single-quoted nginx strings
    affinity = f"worker_cpu_affinity {1 << cpu:b};" if cpu is not None else ""
    conf = f"""
worker_processes 1;
{affinity}
worker_rlimit_nofile 20000;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    # Keep-alive connections live for the whole run, as with a real API.
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = /v1/chat/completions {{
            default_type application/json;
            return 200 '{body}';
        }}
        location = /v1/messages {{
            default_type application/json;
            return 200 '{message}';
        }}
    }}
}}
"""
    path = tmp / "nginx.conf"
    path.write_text(conf)
    return path
