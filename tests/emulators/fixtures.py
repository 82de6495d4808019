"""Pytest fixtures for the OpenAI emulator.

Make them visible to a test tree by importing them into its conftest.py::

    from tests.emulators.fixtures import openai_emulator, openai_emulator_server  # noqa: F401

``openai_emulator_server`` starts one emulator per test session (per xdist
worker), because starting a thread and a server per test is needless work.
``openai_emulator`` hands that same server to a single test and resets it
before and after, so no request log, key behaviour, stream gate or usage flag
leaks from one test into another.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .anthropic_api import AnthropicEmulator
from .openai_api import OpenAIEmulator

__all__ = ["anthropic_emulator", "anthropic_emulator_server", "openai_emulator", "openai_emulator_server"]


@pytest.fixture(scope="session")
def openai_emulator_server() -> Iterator[OpenAIEmulator]:
    """The session's emulator; prefer ``openai_emulator``, which resets it."""
    emulator = OpenAIEmulator().start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def openai_emulator(openai_emulator_server: OpenAIEmulator) -> Iterator[OpenAIEmulator]:
    """A freshly reset emulator (``valid_keys=("sk-upstream-good",)``, default models)."""
    openai_emulator_server.reset()
    yield openai_emulator_server
    # Also after: releases any stream a failed test left paused on the gate.
    openai_emulator_server.reset()


@pytest.fixture(scope="session")
def anthropic_emulator_server() -> Iterator[AnthropicEmulator]:
    emulator = AnthropicEmulator().start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def anthropic_emulator(anthropic_emulator_server: AnthropicEmulator) -> Iterator[AnthropicEmulator]:
    """A freshly reset Anthropic emulator (``valid_keys=("sk-ant-upstream-good",)``)."""
    anthropic_emulator_server.reset()
    yield anthropic_emulator_server
    anthropic_emulator_server.reset()
