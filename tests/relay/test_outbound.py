"""Outbound proxies: the channel's own, else the environment's, minus NO_PROXY."""

from __future__ import annotations

from relay.outbound import proxy_for


def test_channel_proxy_wins(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://env-proxy:3128")
    assert proxy_for("https://api.openai.com/v1", "http://mine:8080") == "http://mine:8080"


def test_environment_proxy_and_no_proxy(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://env-proxy:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,.internal")
    assert proxy_for("https://api.openai.com/v1", None) == "http://env-proxy:3128"
    assert proxy_for("https://llm.internal/v1", None) is None
    assert proxy_for("http://localhost:11434", None) is None


def test_no_environment_proxy(monkeypatch):
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert proxy_for("https://api.openai.com/v1", None) is None
