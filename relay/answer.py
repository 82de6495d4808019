"""Answering the client: a whole body, or a stream forwarded event by event
as it arrives (never collected), through the adapters' converters when the
client and the upstream speak different formats."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson

from relay.call import Call, server_timing
from relay.errors import RelayError
from relay.http import JSON, Receive, Send, send_response
from relay.i18n import N_
from relay.metering import Usage
from relay.providers import PROVIDERS
from relay.providers.base import HubDecoder, HubEncoder, Provider, Stream
from relay.providers.openai import DELIVERED_KEEP, answer_text
from relay.settlement import Settlement

SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]


def model_renames(call: Call) -> tuple[tuple[bytes, bytes], ...]:
    """With model mapping, the upstream's model name as it appears in JSON
    (compact and spaced) and the client's model name to put back: the client
    sees the model it asked for; the usage row keeps both. (A converted
    answer is written with the client's model name in the first place.)"""
    channel = call.channel
    if channel is None:
        return ()
    upstream = channel.upstream_model(call.model)
    if upstream == call.model:
        return ()
    theirs, ours = orjson.dumps(upstream), orjson.dumps(call.model)
    return ((b'"model":' + theirs, b'"model":' + ours), (b'"model": ' + theirs, b'"model": ' + ours))


def provider_of(call: Call) -> Provider:
    assert call.channel is not None
    return PROVIDERS[call.channel.protocol]


async def respond(call: Call, response: aiohttp.ClientResponse, send: Send, settlement: Settlement) -> None:
    data = await response.read()  # read (and timed) in the attempt already: aiohttp keeps it
    provider = provider_of(call)
    if call.converted:
        try:
            hub, usage = provider.hub_response(data, call.model)
        except (ValueError, TypeError, KeyError, AttributeError):
            await settlement.finish_failed(call, RelayError(502, "unreadable answer"))
            raise RelayError(
                502, N_("The upstream's answer could not be read."), type="server_error", code="upstream_error"
            ) from None
        data, content_type = call.inbound.from_hub(hub, call.model), JSON
        if usage is None:
            usage = settlement.estimate(call, completion_text=answer_text(hub))
    else:
        for upstream_name, client_name in model_renames(call):
            data = data.replace(upstream_name, client_name)
        content_type = response.headers.get("Content-Type", "application/json").encode("latin-1")
        usage = settlement.usage_from_body(call, provider, data, content_type)
    await settlement.settle(call, usage, 200)
    await send_response(send, 200, data, call.request_id, content_type=content_type, extra=[server_timing(call)])


class Converted:
    """A stream from an upstream of another format: the provider's decoder
    turns each event into hub chunks, the client's encoder writes them."""

    __slots__ = ("decoder", "delivered", "encoder", "error")

    def __init__(self, decoder: HubDecoder, encoder: HubEncoder) -> None:
        self.decoder = decoder
        self.encoder = encoder
        self.error: str | None = None
        self.delivered: list[str] = []

    @property
    def usage(self) -> Usage | None:
        return self.decoder.usage

    @property
    def done(self) -> bool:
        return self.decoder.done

    def take(self, event: bytes) -> bytes | None:
        chunks = self.decoder.feed(event)
        if self.decoder.error is not None:
            self.error = self.decoder.error
        if not chunks:
            return None
        if len(self.delivered) < DELIVERED_KEEP:
            self.delivered.append("".join(answer_text(c) for c in chunks))
        return b"".join(self.encoder.encode(chunk) for chunk in chunks)

    def end(self) -> bytes:
        return self.encoder.end(self.decoder.usage)

    def error_tail(self, message: str, request_id: str) -> bytes:
        return self.encoder.error_tail(message, request_id)

    def delivered_text(self) -> str:
        return "".join(self.delivered)


def _stream_state(call: Call) -> Stream:
    provider = provider_of(call)
    if call.converted:
        return Converted(provider.hub_decoder(call.model), call.inbound.hub_encoder(call.model, call.wants_usage))
    secret = call.key.secret if call.key is not None else ""
    return provider.native_stream(call.wants_usage, secret, model_renames(call))


async def stream(
    call: Call, response: aiohttp.ClientResponse, receive: Receive, send: Send, settlement: Settlement
) -> None:
    state = _stream_state(call)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [*SSE_HEADERS, (b"x-request-id", call.request_id.encode()), server_timing(call)],
        }
    )
    pump = asyncio.create_task(_pump(response, send, state))
    watch = asyncio.create_task(_wait_disconnect(receive))
    client_gone = False
    try:
        await asyncio.wait((pump, watch), return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not pump.done():
            pump.cancel()  # client gone: stop reading upstream
            client_gone = True
            await asyncio.gather(pump, return_exceptions=True)
        watch.cancel()
        response.close()
    usage = state.usage or settlement.estimate(call, completion_text=state.delivered_text())
    failed = state.error is not None
    try:
        await settlement.settle(call, usage, 200, error=state.error or ("client disconnected" if client_gone else ""))
    except RelayError as exc:  # Redis gone at the end of a stream: the answer is sent, end it
        state.error = state.error or exc.message
    if client_gone:
        return
    tail = state.error_tail(state.error or "", call.request_id) if failed else state.end()
    await send({"type": "http.response.body", "body": tail, "more_body": False})


async def _pump(response: aiohttp.ClientResponse, send: Send, state: Stream) -> None:
    buffer = b""
    try:
        async for chunk in response.content.iter_any():
            buffer += chunk
            out = []
            while (end := buffer.find(b"\n\n")) >= 0:
                event, buffer = buffer[: end + 2], buffer[end + 2 :]
                sent = state.take(event)
                if sent:
                    out.append(sent)
            if out:
                await send({"type": "http.response.body", "body": b"".join(out), "more_body": True})
            if state.error is not None:
                return  # the upstream's own error event: the stream ends there
        if not state.done:
            state.error = "upstream closed the stream early"
    except TimeoutError:
        state.error = "upstream stopped sending (idle timeout)"
    except aiohttp.ClientError as exc:
        state.error = f"upstream connection broke ({type(exc).__name__})"


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
