"""The hostile inputs of the abuse suite, shared with `make reliability`."""

from __future__ import annotations

JSON_ENDPOINTS = ["chat/completions", "completions", "embeddings", "responses", "images/generations",
                  "audio/speech", "moderations"]  # fmt: skip
UPLOADS = ["audio/transcriptions", "audio/translations"]
BAD_BODIES: list[bytes] = [
    b"",
    b"{",
    b"null",
    b"[]",
    b'"text"',
    b"1e999",
    b"\xff\xfe\x00{",
    b"[" * 5000 + b"]" * 5000,
    b'{"model": ' + b"9" * 400 + b"}",
    b'{"model": 1, "messages": []}',
    b'{"model": "gpt-4o-mini", "messages": {"role": "user"}}',
    b'{"model": "gpt-4o-mini", "messages": [[[[[[[]]]]]]]}',
    b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": 5}]}',
    b'{"model": "gpt-4o-mini", "stream": "true", "messages": [{"role": "user", "content": "x"}]}',
    b'{"model": "gpt-4o-mini", "stream_options": [], "input": "x"}',
    b'{"model": "gpt-4o-mini", "max_tokens": 1e30, "messages": [{"role": "user", "content": "x"}]}',
    b'{"model": "gpt-4o-mini", "n": -1, "messages": [{"role": "user", "content": "x"}]}',
    b'{"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}',
    b'{"model": "' + "\u202e".encode() * 1000 + b'"}',
]

# Upstream faults (tests/emulators/faults.py and the emulator's own behaviours)
BEFORE_FIRST_BYTE = [
    ("reset_before_headers", {}),
    ("reset_mid_body", {}),
    ("stall", {"seconds": 30}),
    ("stall_after_headers", {"seconds": 30}),
    ("html_error", {"status": 502}),
    ("quote_key", {"status": 500}),
    ("rate_limited", {"retry_after": "999999999"}),
    ("rate_limited", {"retry_after": "-3"}),
    ("rate_limited", {"retry_after": "soon"}),
    ("server_error", {}),
]
# For a stream these three come after the first byte (an event, then the fault).
WHOLE_ANSWERS_ONLY = {"reset_mid_body", "stall_after_headers", "quote_key"}
AFTER_FIRST_BYTE = ["reset_mid_stream", "stall_after_headers", "invalid_utf8", "huge_sse_line", "quote_key"]
