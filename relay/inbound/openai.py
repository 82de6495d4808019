"""The OpenAI API as clients speak it: already the hub shape."""

from __future__ import annotations

import orjson

from relay.metering import Usage
from relay.providers.base import Json
from relay.providers.openai import DONE, error_event


def error_body(status: int, message: str, type: str, code: str | None, param: str | None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type, "param": param, "code": code}})


class ChunkEncoder:
    """Hub chunks as an OpenAI stream: each chunk one ``data:`` event, the
    usage chunk only for a client that asked for it, [DONE] last."""

    __slots__ = ("model", "wants_usage")

    def __init__(self, model: str, client_wants_usage: bool) -> None:
        self.model = model
        self.wants_usage = client_wants_usage

    def encode(self, chunk: Json) -> bytes:
        if chunk.get("choices") == [] and not self.wants_usage:
            return b""
        chunk["model"] = self.model
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def end(self, usage: Usage | None) -> bytes:
        return DONE

    def error_tail(self, message: str, request_id: str) -> bytes:
        return error_event(message, request_id)


class OpenAIInbound:
    format = "openai"

    def to_hub(self, payload: Json) -> Json:
        return payload

    def from_hub(self, hub: Json, model: str) -> bytes:
        hub["model"] = model
        return orjson.dumps(hub)

    def hub_encoder(self, model: str, client_wants_usage: bool) -> ChunkEncoder:
        return ChunkEncoder(model, client_wants_usage)

    def error_body(self, status: int, message: str, type: str, code: str | None, param: str | None) -> bytes:
        return error_body(status, message, type, code, param)


INBOUND = OpenAIInbound()
