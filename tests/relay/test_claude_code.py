"""Claude Code pointed at the gateway (ANTHROPIC_BASE_URL), with an oneproxy
key as ANTHROPIC_AUTH_TOKEN (sent as a Bearer token) or ANTHROPIC_API_KEY
(sent as x-api-key), in front of an ``anthropic`` channel.

First a replay of what Claude Code sends (its headers, ``?beta=true``,
``anthropic-beta`` features, cache_control breakpoints, adaptive thinking,
fields the gateway does not know): the thinking block's signature must come
back to the upstream byte for byte, or the upstream refuses the turn. Then
the real CLI (``claude -p``), installed from npm by ``make test`` into
.venv/node, runs offline against the gateway.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess

import pytest
import requests

from tests.emulators.anthropic_api import THINKING_TEXT
from tests.gateway import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "claude-sonnet-4-6"
BETA = "claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27,effort-2025-11-24"
TOOLS = [
    {
        "name": "Bash",
        "description": "Executes a given bash command.",
        "input_schema": {
            "type": "object",
            "properties": {"command": {"type": "string"}, "timeout": {"type": "number"}},
            "required": ["command"],
            "additionalProperties": False,
            "$schema": "http://json-schema.org/draft-07/schema#",
        },
    }
]
CLAUDE = pathlib.Path(__file__).resolve().parents[2] / ".venv/node/node_modules/.bin/claude"


def claude_code_request(auth: dict[str, str], messages: list) -> dict:
    return {
        "headers": {
            **auth,
            "anthropic-version": "2023-06-01",
            "anthropic-beta": BETA,
            "anthropic-dangerous-direct-browser-access": "true",
            "x-app": "cli",
            "user-agent": "claude-cli/2.1.197 (external, cli)",
            "content-type": "application/json",
        },
        "json": {
            "model": MODEL,
            "max_tokens": 32000,
            "stream": True,
            "thinking": {"type": "adaptive"},
            "output_config": {"effort": "high"},
            "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
            "metadata": {"user_id": json.dumps({"device_id": "d" * 64, "session_id": "s-1"})},
            "system": [
                {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.197;"},
                {"type": "text", "text": "You are Claude Code. " * 30, "cache_control": {"type": "ephemeral"}},
            ],
            "tools": TOOLS,
            "messages": messages,
        },
    }


def events(response: requests.Response) -> list[tuple[str, dict, bytes]]:
    """(event name, data, the data line's raw bytes) of an SSE response."""
    out = []
    for block in response.content.split(b"\n\n"):
        lines = dict(line.split(b": ", 1) for line in block.split(b"\n") if b": " in line)
        if b"event" in lines:
            out.append((lines[b"event"].decode(), json.loads(lines[b"data"]), lines[b"data"]))
    return out


@pytest.mark.parametrize("auth_style", ["ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_API_KEY"])
def test_a_claude_code_session_replayed(anthropic_setup, gateway, auth_style):
    # given
    key = anthropic_setup["key"]
    auth = {"authorization": f"Bearer {key}"} if auth_style == "ANTHROPIC_AUTH_TOKEN" else {"x-api-key": key}
    emulator = anthropic_setup["anthropic_emulator"]
    url = f"{gateway.url}/v1/messages?beta=true"
    first_turn = [
        {"role": "user", "content": [{"type": "text", "text": "list files", "cache_control": {"type": "ephemeral"}}]}
    ]
    # when: turn one streams thinking and a tool call
    first = requests.post(url, **claude_code_request(auth, first_turn), timeout=15)
    # then: passed through natively, every field and header Claude Code relies on intact
    assert first.status_code == 200, first.text
    upstream = emulator.last_request
    assert upstream["key"] == "sk-ant-upstream-good" and "authorization" not in upstream["headers"]
    assert upstream["headers"]["anthropic-beta"] == BETA
    sent = claude_code_request(auth, first_turn)["json"]
    assert upstream["json"] == sent  # cache_control, thinking, output_config, context_management untouched
    got = events(first)
    assert got[0][0] == "message_start" and got[-1][0] == "message_stop"
    signature_event = next(e for e in got if e[1].get("delta", {}).get("type") == "signature_delta")
    # the signature's bytes on the wire, as the upstream wrote them
    assert emulator._sign(THINKING_TEXT).encode() in signature_event[2]
    # when: turn two sends the thinking block back with its signature, and the tool's result
    thinking = "".join(e[1]["delta"].get("thinking", "") for e in got if e[0] == "content_block_delta")
    signature = signature_event[1]["delta"]["signature"]
    tool = next(
        e[1]["content_block"]
        for e in got
        if e[0] == "content_block_start" and e[1]["content_block"]["type"] == "tool_use"
    )
    arguments = "".join(e[1]["delta"].get("partial_json", "") for e in got if e[0] == "content_block_delta")
    second_turn = [
        *first_turn,
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": thinking, "signature": signature},
                {"type": "tool_use", "id": tool["id"], "name": tool["name"], "input": json.loads(arguments)},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": tool["id"],
                    "content": "a.txt\nb.txt",
                    "cache_control": {"type": "ephemeral"},
                }
            ],
        },
    ]
    second = requests.post(url, **claude_code_request(auth, second_turn), timeout=15)
    # then: the upstream accepted the signature (it refuses any other byte string)
    assert second.status_code == 200, second.text
    assert emulator.last_request["json"]["messages"][1]["content"][0]["signature"] == signature
    assert any(e[0] == "content_block_delta" and e[1]["delta"].get("type") == "text_delta" for e in events(second))
    # and both turns are billed with Anthropic's counts, the cached system prompt included
    from billing.models import UsageLog

    wait_for(lambda: UsageLog.objects.count() == 2)
    turn_one, turn_two = UsageLog.objects.order_by("id")
    assert turn_one.cache_write_tokens > 0 and turn_one.cost > 0 and not turn_one.estimated
    assert turn_two.cached_tokens > 0 or turn_two.cache_write_tokens > 0


def test_a_tampered_signature_is_refused_by_the_upstream(anthropic_setup, gateway):
    # The check the test above relies on: a signature changed by one byte does not pass.
    turn = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": THINKING_TEXT, "signature": "AAAA"}]},
        {"role": "user", "content": "go on"},
    ]
    answer = requests.post(
        f"{gateway.url}/v1/messages",
        **claude_code_request({"x-api-key": anthropic_setup["key"]}, turn),
        timeout=15,
    )
    assert answer.status_code == 400 and answer.json()["error"]["type"] == "invalid_request_error"
    assert "signature" in answer.json()["error"]["message"]


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
@pytest.mark.parametrize("auth_variable", ["ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_API_KEY"])
def test_the_real_claude_code_cli(anthropic_setup, gateway, tmp_path, auth_variable):
    # given: the CLI (make test installs it with npm), offline, pointed at the gateway
    assert CLAUDE.exists(), "make test installs @anthropic-ai/claude-code into .venv/node (npm)"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "ANTHROPIC_BASE_URL": gateway.url,
        auth_variable: anthropic_setup["key"],
        "ANTHROPIC_MODEL": MODEL,
        "ANTHROPIC_SMALL_FAST_MODEL": "claude-haiku-4-5",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1",
    }
    emulator = anthropic_setup["anthropic_emulator"]
    # when
    done = subprocess.run(
        [str(CLAUDE), "-p", "Say hi"],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # then: the emulator's answer came back through the gateway
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Hello from the Anthropic emulator" in done.stdout
    calls = [r for r in emulator.requests if r["path"] == "/v1/messages"]
    assert calls and all(r["key"] == "sk-ant-upstream-good" for r in calls)
    assert all("claude-code" in r["headers"].get("anthropic-beta", "") for r in calls)
    from billing.models import UsageLog

    wait_for(lambda: UsageLog.objects.filter(endpoint="messages").count() >= len(calls))
