"""Settlement: what a request used, what it costs, and the usage event that
charges it; or, when nothing reached the client, the hold released."""

from __future__ import annotations

import time

import orjson

from relay import tokenizer
from relay.access import price
from relay.call import Call
from relay.errors import RelayError, mask_secrets
from relay.holds import AUDIO_UPLOADS
from relay.keypool import KeyPool
from relay.ledger import Ledger
from relay.metering import Usage, cost_micro, usage_from_openai
from relay.ports import UsageEvent
from relay.providers.base import Provider
from relay.providers.openai import PassThrough, answer_text

# The usage row of a request whose relay died after sending it upstream.
LOST_ERROR = "the relay process ended before this request settled; charged at the hold's estimate"
# A transcription without a reported duration: its upload at a typical speech bitrate (128 kbit/s).
AUDIO_BYTES_PER_SECOND_TYPICAL = 16_000


class Settlement:
    def __init__(self, ledger: Ledger, pool: KeyPool) -> None:
        self.ledger = ledger
        self.pool = pool

    async def settle(self, call: Call, usage: Usage, status: int, error: str = "") -> None:
        assert call.hold is not None and call.channel is not None
        found = price(call.snapshot, call.model, call.channel)
        cost = cost_micro(usage, found, call.user.group_multiplier, call.user.team_multiplier)
        event = self.event(call, usage, cost, status, error)
        if call.key is not None:
            tokens = usage.prompt_tokens + usage.completion_tokens
            self.pool.used(call.key, ok=True, latency_ms=event.latency_ms, tokens=tokens)
        settling = time.monotonic()
        await self.ledger.settle(call.hold, event)
        call.ledger += time.monotonic() - settling
        call.hold = None

    def event(self, call: Call, usage: Usage, cost: int, status: int, error: str) -> UsageEvent:
        return UsageEvent(
            request_id=call.request_id,
            created_at=time.time(),
            user_id=call.user.id,
            team_id=call.user.team_id,
            token_id=call.token.id,
            endpoint=call.endpoint,
            model=call.model,
            upstream_model=call.channel.upstream_model(call.model) if call.channel else call.model,
            channel_id=call.channel.id if call.channel else None,
            key_id=call.key.id if call.key else None,
            usage=usage,
            cost=cost,
            group_multiplier=str(call.user.group_multiplier),
            team_multiplier=str(call.user.team_multiplier),
            attempts=call.attempts,
            status=status,
            latency_ms=int((time.monotonic() - call.started) * 1000),
            stream=call.stream,
            error=mask_secrets(error)[:2000] if error else "",
        )

    def mark_sent(self, call: Call) -> None:
        """Record with the hold that the request goes upstream now: if this
        process dies before settling, the request is charged at the hold's
        estimate (the upstream may have done and billed the work), and a
        hold without this record is only released."""
        assert call.hold is not None
        event = self.event(call, Usage(estimated=True), call.hold.amount, 0, LOST_ERROR)
        event.held, event.kind = call.hold.amount, "sent"
        self.ledger.sent(call.hold, event)

    async def finish_failed(self, call: Call, exc: BaseException) -> None:
        """Nothing reached the client: release the hold; if an upstream
        answered, still log the request (at no cost)."""
        if call.hold is None:
            return
        if call.reached and call.channel is not None:
            status = exc.status if isinstance(exc, RelayError) else 502
            message = exc.message if isinstance(exc, RelayError) else type(exc).__name__
            await self.ledger.settle(call.hold, self.event(call, Usage(), 0, status, message))
        else:
            await self.ledger.release(call.hold)
        call.hold = None

    def usage_from_body(self, call: Call, provider: Provider, data: bytes, content_type: bytes) -> Usage:
        """Usage of a whole answer passed through: as the upstream reported
        it, else counted."""
        if call.endpoint == "messages/count_tokens":
            return Usage()  # free at Anthropic
        json_body = content_type.startswith(b"application/json")
        if json_body and call.endpoint != "images/generations":  # images are billed by count: that needs the body
            usage = provider.native_usage(data)
            if usage is not None:
                return usage
        parsed = None
        if json_body:
            try:
                parsed = orjson.loads(data)
            except orjson.JSONDecodeError:
                parsed = None
        usage = usage_from_openai(parsed.get("usage")) if isinstance(parsed, dict) else None
        if usage is None and (content_type.startswith(b"text/event-stream") or data.lstrip()[:5] == b"data:"):
            # A stream where a whole answer was expected (an upstream that
            # streams anyway): billed for what it carried, as a stream is.
            state = PassThrough(client_wants_usage=True)
            for event in data.replace(b"\r\n", b"\n").split(b"\n\n"):
                state.take(event + b"\n\n")
            return state.usage or self.estimate(call, completion_text=state.delivered_text())
        if usage is None:
            text = answer_text(parsed) if parsed is not None else ""
            if not text and not json_body and content_type.startswith(b"text/"):
                text = data.decode("utf-8", "replace")  # a transcription as text, srt or vtt
            usage = self.estimate(call, completion_text=text)
        if call.endpoint == "images/generations" and isinstance(parsed, dict):
            usage.images = len(parsed.get("data") or ())
        return usage

    def estimate(self, call: Call, completion_text: str) -> Usage:
        """Count tokens locally: the upstream reported no usage."""
        payload = call.payload or {}
        if call.endpoint == "moderations":
            return Usage(estimated=True)
        if call.endpoint in AUDIO_UPLOADS:
            # No duration reported (a text or srt answer): at least a second.
            seconds = max(1, len(call.raw) // AUDIO_BYTES_PER_SECOND_TYPICAL)
            completion = tokenizer.count_tokens(completion_text, call.model)
            return Usage(audio_ms=seconds * 1000, completion_tokens=completion, estimated=True)
        if isinstance(payload.get("messages"), list):
            prompt = tokenizer.count_chat_prompt(payload["messages"], call.model)
            system = payload.get("system")  # Anthropic's Messages API
            if system:
                prompt += tokenizer.count_chat_prompt([{"content": system}], call.model)
            if payload.get("tools"):
                prompt += tokenizer.count_tokens(orjson.dumps(payload["tools"]).decode(), call.model)
        else:
            text = payload.get("prompt", payload.get("input", ""))
            if isinstance(text, list):
                text = " ".join(t for t in text if isinstance(t, str))
            prompt = tokenizer.count_tokens(text if isinstance(text, str) else "", call.model)
        return Usage(
            prompt_tokens=prompt, completion_tokens=tokenizer.count_tokens(completion_text, call.model), estimated=True
        )
