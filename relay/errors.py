"""Errors the relay answers with, in OpenAI's shape (Anthropic's for /v1/messages)."""

from __future__ import annotations

import re

import orjson

# Anything that looks like a provider or relay key is masked before it is
# relayed or logged: sk-…, sk-ant-…, AIza…, and bearer tokens in messages.
_SECRET = re.compile(r"(sk-[A-Za-z0-9_\-]{3})[A-Za-z0-9_\-]{8,}|(AIza)[0-9A-Za-z_\-]{20,}|(Bearer\s+)\S{8,}")


def mask_secrets(text: str) -> str:
    return _SECRET.sub(lambda m: (m.group(1) or m.group(2) or m.group(3)) + "***", text)


class RelayError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.retry_after = retry_after

    def body(self, request_id: str) -> bytes:
        return orjson.dumps(
            {
                "error": {
                    "message": f"{self.message} (request id: {request_id})",
                    "type": self.type,
                    "param": self.param,
                    "code": self.code,
                }
            }
        )


def bad_request(message: str, *, param: str | None = None, code: str | None = None) -> RelayError:
    return RelayError(400, message, param=param, code=code)


def unauthorized(message: str) -> RelayError:
    return RelayError(401, message, code="invalid_api_key")


def insufficient_quota(message: str) -> RelayError:
    return RelayError(402, message, type="insufficient_quota", code="insufficient_quota")


def forbidden(message: str, code: str = "permission_denied") -> RelayError:
    return RelayError(403, message, type="permission_error", code=code)


def model_not_found(model: str) -> RelayError:
    return RelayError(
        404,
        f"The model '{model}' does not exist or you do not have access to it.",
        code="model_not_found",
        param="model",
    )
