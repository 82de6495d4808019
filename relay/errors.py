"""Errors the relay answers with, in OpenAI's shape (Anthropic's for /v1/messages)."""

from __future__ import annotations

import re
from collections.abc import Mapping

import orjson

from relay.i18n import N_, say

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
        params: Mapping[str, object] | None = None,
    ) -> None:
        # ``message`` is a template marked with N_ (relay/i18n.py), its values
        # in ``params``; ``self.message`` is it in English, as logged and stored.
        english = say(message, params, None)
        super().__init__(english)
        self.status = status
        self.template = message
        self.params = params
        self.message = english
        self.type = type
        self.code = code
        self.param = param
        self.retry_after = retry_after

    def said_in(self, language: str | None) -> str:
        """The message in ``language`` (relay.i18n.client_language; None: English)."""
        return self.message if language is None else say(self.template, self.params, language)

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


Params = Mapping[str, object] | None


def bad_request(
    message: str, *, param: str | None = None, code: str | None = None, params: Params = None
) -> RelayError:
    return RelayError(400, message, param=param, code=code, params=params)


def unauthorized(message: str) -> RelayError:
    return RelayError(401, message, code="invalid_api_key")


def insufficient_quota(message: str, params: Params = None) -> RelayError:
    return RelayError(402, message, type="insufficient_quota", code="insufficient_quota", params=params)


def forbidden(message: str, code: str = "permission_denied", params: Params = None) -> RelayError:
    return RelayError(403, message, type="permission_error", code=code, params=params)


def model_not_found(model: str) -> RelayError:
    return RelayError(
        404,
        N_("The model '{model}' does not exist or you do not have access to it."),
        code="model_not_found",
        param="model",
        params={"model": model},
    )
