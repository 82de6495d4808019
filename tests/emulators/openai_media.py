"""The OpenAI emulator's media endpoints: images, audio and moderations
(a mixin of :class:`tests.emulators.openai_api.OpenAIEmulator`)."""

from __future__ import annotations

import base64
import hashlib
import secrets
import struct
import time
import zlib
from typing import Any

from aiohttp import BodyPartReader, web

from .base import APIError as _APIError
from .base import Call as _Call

TRANSCRIPTION_MODEL_DEFAULT_USAGE_SECONDS = 1.0


def count_words(text: str) -> int:
    """The emulator's token count of a text: its whitespace-separated words."""
    return len(text.split())


def _content_text(content: Any) -> str:
    """Text of a message ``content``: a string or a list of typed parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [part.get("text", "") for part in content if isinstance(part, dict)]
        return " ".join(t for t in texts if isinstance(t, str))
    return ""


def _as_text_list(value: Any) -> list[str]:
    """The separate inputs of an embeddings/completions/moderations request, as text."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        if value and all(isinstance(v, int) for v in value):
            return [" ".join(map(str, value))]  # a single token-id array
        return [v if isinstance(v, str) else " ".join(map(str, v)) if isinstance(v, list) else str(v) for v in value]
    return []


def _missing(param: str) -> _APIError:
    return _APIError(400, f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")


def _tiny_png() -> bytes:
    """A valid 1x1 RGB PNG, built by hand so the emulator needs no image library."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\x10\xa3\x7f")  # filter byte + one RGB pixel
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


TINY_PNG = _tiny_png()


def _fake_mp3(text: str) -> bytes:
    """Deterministic MP3-looking bytes: an ID3v2 header then one silent frame per word.

    0xFFFB9064 is an MPEG-1 Layer III 128 kbit/s 44.1 kHz frame header; such a frame
    is 417 bytes.  Tools that sniff the format recognise it; length grows with input.
    """
    frame = b"\xff\xfb\x90\x64" + b"\x00" * 413
    return b"ID3\x04\x00\x00\x00\x00\x00\x00" + frame * max(1, count_words(text))


class MediaEndpoints:
    """Images, audio and moderations, for an emulator that has ``root_url``,
    ``models``, ``report_usage``, ``_check_model``, ``_json_response`` and
    ``_common_headers``."""

    async def _images_generations(self, request: web.Request, call: _Call) -> web.StreamResponse:
        body = call.json
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise _missing("prompt")
        # The model is optional here (dall-e-2 by default) and image models are
        # not in the chat-model list, so any model name is accepted.
        model = body.get("model") or "dall-e-2"
        n = self._choice_count(body)
        gpt_image = model.startswith("gpt-image")
        # gpt-image-* models always answer base64; dall-e-* default to urls.
        response_format = "b64_json" if gpt_image else body.get("response_format") or "url"
        if response_format not in ("url", "b64_json"):
            raise _APIError(
                400,
                f"Invalid value for 'response_format': {response_format!r}.",
                param="response_format",
                code="invalid_value",
            )
        images: list[dict[str, Any]] = []
        for index in range(n):
            image: dict[str, Any] = (
                {"b64_json": base64.b64encode(TINY_PNG).decode()}
                if response_format == "b64_json"
                else {"url": f"{self.root_url}/_emulator/images/{secrets.token_hex(8)}-{index}.png"}
            )
            if model == "dall-e-3":
                image["revised_prompt"] = prompt
            images.append(image)
        payload: dict[str, Any] = {"created": int(time.time()), "data": images}
        if gpt_image:
            payload.update(
                background="opaque", output_format="png", quality="medium", size=body.get("size") or "1024x1024"
            )
            if self.report_usage:
                text_tokens = count_words(prompt)
                payload["usage"] = {
                    "input_tokens": text_tokens,
                    "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": 0},
                    "output_tokens": 1056 * n,
                    "total_tokens": text_tokens + 1056 * n,
                }
        return self._json_response(call, payload)

    async def _serve_image(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=TINY_PNG, content_type="image/png")

    # ---------------------------------------------------------------- audio

    _SPEECH_CONTENT_TYPES = {
        "mp3": "audio/mpeg",
        "opus": "audio/opus",
        "aac": "audio/aac",
        "flac": "audio/flac",
        "wav": "audio/wav",
        "pcm": "audio/pcm",
    }

    async def _audio_speech(self, request: web.Request, call: _Call) -> web.StreamResponse:
        body = call.json
        for name in ("model", "input", "voice"):
            if body.get(name) in (None, ""):
                raise _missing(name)
        audio_format = body.get("response_format") or "mp3"
        content_type = self._SPEECH_CONTENT_TYPES.get(audio_format)
        if content_type is None:
            raise _APIError(
                400,
                f"Invalid value for 'response_format': {audio_format!r}.",
                param="response_format",
                code="invalid_value",
            )
        headers = self._common_headers(call)
        # Same bytes whatever the format: tests check plumbing, not audio decoding.
        return web.Response(body=_fake_mp3(str(body["input"])), content_type=content_type, headers=headers)

    async def _audio_transcriptions(self, request: web.Request, call: _Call) -> web.StreamResponse:
        if not request.content_type.startswith("multipart/"):
            raise _APIError(400, "Invalid Content-Type header (expected multipart/form-data).")
        form: dict[str, str] = {}
        files: dict[str, dict[str, Any]] = {}
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, BodyPartReader) or part.name is None:
                continue  # nested multipart bodies are not used by this API
            data = await part.read()
            if part.filename is not None:
                files[part.name] = {
                    "filename": part.filename,
                    "content_type": part.headers.get("Content-Type"),
                    "size": len(data),
                    "sha256": hashlib.sha256(data).hexdigest(),
                }
            else:
                form[part.name] = bytes(data).decode("utf-8", "replace")
        call.record["form"] = form
        call.record["files"] = files

        if "file" not in files:
            raise _missing("file")
        if not form.get("model"):
            raise _missing("model")
        model = form["model"]
        text = f"Hello from the OpenAI emulator, {files['file']['size']} bytes heard."
        response_format = form.get("response_format", "json")
        headers = self._common_headers(call)
        if response_format == "text":
            return web.Response(text=text + "\n", content_type="text/plain", headers=headers)
        if response_format == "srt":
            srt = f"1\n00:00:00,000 --> 00:00:01,000\n{text}\n\n"
            return web.Response(text=srt, content_type="text/plain", headers=headers)
        if response_format == "vtt":
            vtt = f"WEBVTT\n\n00:00:00.000 --> 00:00:01.000\n{text}\n\n"
            return web.Response(text=vtt, content_type="text/plain", headers=headers)
        if response_format not in ("json", "verbose_json"):
            raise _APIError(
                400,
                f"Invalid value for 'response_format': {response_format!r}.",
                param="response_format",
                code="invalid_value",
            )

        seconds = TRANSCRIPTION_MODEL_DEFAULT_USAGE_SECONDS
        usage: dict[str, Any]
        if model.startswith("whisper"):
            usage = {"type": "duration", "seconds": seconds}
        else:
            audio_tokens = max(1, files["file"]["size"] // 1000)
            usage = {
                "type": "tokens",
                "input_tokens": audio_tokens,
                "input_token_details": {"text_tokens": 0, "audio_tokens": audio_tokens},
                "output_tokens": count_words(text),
                "total_tokens": audio_tokens + count_words(text),
            }
        payload: dict[str, Any] = {"text": text}
        if response_format == "verbose_json":
            payload = {
                "task": "transcribe",
                "language": "english",
                "duration": seconds,
                "text": text,
                "segments": [
                    {
                        "id": 0,
                        "seek": 0,
                        "start": 0.0,
                        "end": seconds,
                        "text": text,
                        "tokens": list(range(50364, 50364 + count_words(text))),
                        "temperature": 0.0,
                        "avg_logprob": -0.1,
                        "compression_ratio": 1.0,
                        "no_speech_prob": 0.0,
                    }
                ],
            }
            usage = {"type": "duration", "seconds": seconds}
        if self.report_usage:
            payload["usage"] = usage
        return self._json_response(call, payload)

    # ---------------------------------------------------------------- moderations

    _MODERATION_CATEGORIES = (
        "harassment",
        "harassment/threatening",
        "hate",
        "hate/threatening",
        "illicit",
        "illicit/violent",
        "self-harm",
        "self-harm/instructions",
        "self-harm/intent",
        "sexual",
        "sexual/minors",
        "violence",
        "violence/graphic",
    )
    _IMAGE_CATEGORIES = frozenset(
        {"self-harm", "self-harm/instructions", "self-harm/intent", "sexual", "violence", "violence/graphic"}
    )

    async def _moderations(self, request: web.Request, call: _Call) -> web.StreamResponse:
        """Flags ``violence`` when a text contains "kill" (case-insensitive); nothing else."""
        body = call.json
        value = body.get("input")
        if value is None:
            raise _missing("input")
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            # Multi-modal input: one result for the whole list of parts.
            texts = [_content_text(value)]
            has_image = any(v.get("type") == "image_url" for v in value)
        else:
            texts = _as_text_list(value)
            has_image = False
        results = []
        for text in texts:
            violent = "kill" in text.lower()
            categories = {name: violent and name == "violence" for name in self._MODERATION_CATEGORIES}
            scores = {name: (0.93 if categories[name] else 1e-6) for name in self._MODERATION_CATEGORIES}
            applied = {
                name: ["text", "image"] if has_image and name in self._IMAGE_CATEGORIES else ["text"]
                for name in self._MODERATION_CATEGORIES
            }
            results.append(
                {
                    "flagged": violent,
                    "categories": categories,
                    "category_scores": scores,
                    "category_applied_input_types": applied,
                }
            )
        payload = {
            "id": "modr-" + secrets.token_hex(16),
            "model": body.get("model") or "omni-moderation-latest",
            "results": results,
        }
        return self._json_response(call, payload)
