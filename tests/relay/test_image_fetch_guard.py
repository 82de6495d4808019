"""Images named by http(s) URL for an Anthropic channel are fetched by the
gateway, so the fetch is guarded: no private, loopback or link-local
address (by literal, after DNS, after a redirect) unless the operator allows
its network (ONEPROXY_IMAGE_FETCH_ALLOW_NETWORKS), and a size cap."""

from __future__ import annotations

import ipaddress
from typing import Any

import openai
import pytest

from relay.images import allowed, media_type
from tests.emulators.anthropic_api import PNG

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "claude-sonnet-4-6"


def ask(gateway, key, url):
    client = openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)
    content = [{"type": "text", "text": "what is it?"}, {"type": "image_url", "image_url": {"url": url}}]
    messages: list[Any] = [{"role": "user", "content": content}]
    return client.chat.completions.create(model=MODEL, messages=messages)


@pytest.mark.parametrize(
    ("address", "ok"),
    [
        ("8.8.8.8", True),
        ("2606:4700::1111", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.64.0.1", False),  # carrier-grade NAT
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
    ],
)
def test_which_addresses_the_guard_lets_through(address, ok):
    assert allowed(ipaddress.ip_address(address), ()) is ok


def test_an_allowed_network_is_the_only_exception():
    loopback = (ipaddress.ip_network("127.0.0.1/32"),)
    assert allowed(ipaddress.ip_address("127.0.0.1"), loopback)
    assert not allowed(ipaddress.ip_address("127.0.0.2"), loopback)
    assert not allowed(ipaddress.ip_address("10.0.0.1"), loopback)


def test_the_image_type_is_read_from_the_bytes():
    assert media_type(PNG) == "image/png"
    assert media_type(b"\xff\xd8\xff\xe0 jfif") == "image/jpeg"
    assert media_type(b"RIFF\0\0\0\0WEBPVP8 ") == "image/webp"
    assert media_type(b"<html>not an image</html>") is None


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_loopback_is_refused_by_literal_and_after_dns(anthropic_setup, gateway, host):
    # given: production settings (no allowed networks)
    emulator = anthropic_setup["anthropic_emulator"]
    url = f"http://{host}:{emulator.port}/_emulator/image.png"
    # when
    with pytest.raises(openai.BadRequestError) as refused:
        ask(gateway, anthropic_setup["key"], url)
    # then: nothing fetched, nothing sent upstream
    assert refused.value.code == "image_url_refused" and "private or reserved" in refused.value.message
    assert emulator.image_requests == 0 and emulator.requests == []


def test_a_redirect_to_a_refused_address_is_not_followed(anthropic_setup, gateway_with_loopback_images):
    # given: 127.0.0.1 allowed (the test setting), a redirect to another loopback address
    emulator = anthropic_setup["anthropic_emulator"]
    url = f"{emulator.root_url}/_emulator/redirect?to=http://127.0.0.2:{emulator.port}/_emulator/image.png"
    # when
    with pytest.raises(openai.BadRequestError) as refused:
        ask(gateway_with_loopback_images, anthropic_setup["key"], url)
    # then
    assert refused.value.code == "image_url_refused" and "127.0.0.2" in refused.value.message
    assert emulator.image_requests == 0


def test_a_redirect_within_the_rules_is_followed(anthropic_setup, gateway_with_loopback_images):
    emulator = anthropic_setup["anthropic_emulator"]
    url = f"{emulator.root_url}/_emulator/redirect?to=/_emulator/image.png"
    reply = ask(gateway_with_loopback_images, anthropic_setup["key"], url)
    assert reply.choices[0].message.content and emulator.image_requests == 1


def test_an_image_over_the_size_cap_is_refused(anthropic_setup, gateway_with_loopback_images):
    emulator = anthropic_setup["anthropic_emulator"]
    with pytest.raises(openai.BadRequestError) as refused:
        ask(gateway_with_loopback_images, anthropic_setup["key"], f"{emulator.root_url}/_emulator/big.png")
    assert refused.value.code == "image_too_large" and str(5 * 1024 * 1024) in refused.value.message
    assert emulator.requests == []
