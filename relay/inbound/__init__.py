"""Inbound formats: what clients speak (OpenAI's API, Anthropic's Messages
API), each turned into the hub shape and back (relay/providers/base.py)."""

from __future__ import annotations

from relay.inbound import anthropic, openai
from relay.providers.base import Inbound

INBOUND: dict[str, Inbound] = {"openai": openai.INBOUND, "anthropic": anthropic.INBOUND}
