"""channels_app.refresh_balances: provider balances on keys, and the low-balance rule."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from decimal import Decimal

import pytest

from channels_app import balances, services, tasks
from channels_app.models import Channel, ChannelKey, KeyEvent
from tests.emulators.balances import BalanceEmulator

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def balance_emulator_server() -> Iterator[BalanceEmulator]:
    emulator = BalanceEmulator().start()
    yield emulator
    emulator.stop()


@pytest.fixture
def balance_emulator(balance_emulator_server: BalanceEmulator) -> Iterator[BalanceEmulator]:
    balance_emulator_server.reset()
    yield balance_emulator_server
    balance_emulator_server.reset()


def make_channel(emulator: BalanceEmulator, type: str, secret: str, **fields) -> Channel:
    fields.setdefault("name", f"{type}-account")
    return services.create_channel(type=type, base_url=emulator.base_url, models=["m"], keys=[secret], **fields)


# The example bodies of each provider's public API reference.
@pytest.mark.parametrize(
    ("parse", "bodies", "expected"),
    [
        (
            balances.parse_deepseek,
            [
                {
                    "is_available": True,
                    "balance_infos": [
                        {
                            "currency": "CNY",
                            "total_balance": "110.00",
                            "granted_balance": "10.00",
                            "topped_up_balance": "100.00",
                        }
                    ],
                }
            ],
            (Decimal("110"), "CNY"),
        ),
        (
            balances.parse_openrouter_credits,
            [{"data": {"total_credits": 100.5, "total_usage": 25.75}}],
            (Decimal("74.75"), "USD"),
        ),
        (
            balances.parse_openrouter_key,
            [{"data": {"label": "sk-or-v1-au7...890", "limit": 100, "limit_remaining": 74.5, "usage": 25.5}}],
            (Decimal("74.5"), "USD"),
        ),
        (
            balances.parse_siliconflow,
            [{"code": 20000, "message": "OK", "status": True, "data": {"balance": "0.88", "totalBalance": "88.88"}}],
            (Decimal("88.88"), ""),
        ),
        (
            balances.parse_moonshot,
            [
                {
                    "code": 0,
                    "data": {"available_balance": 49.58894, "voucher_balance": 46.58893, "cash_balance": 3.00001},
                }
            ],
            (Decimal("49.58894"), ""),
        ),
        (
            balances.parse_dashboard,
            [{"object": "billing_subscription", "hard_limit_usd": 100.0}, {"object": "list", "total_usage": 2500.0}],
            (Decimal("75"), "USD"),
        ),
    ],
)
def test_it_reads_each_providers_documented_answer(parse, bodies, expected):
    # when
    balance, currency = parse(*bodies)
    # then
    assert (balance, currency) == expected


def test_refresh_stores_each_keys_balance_and_admin_shows_it(balance_emulator, client, operator):
    # given one account of every type that reports a balance, and two that do not
    accounts = {
        "deepseek": ("sk-deepseek-000000001", "110.00", {}),
        "openrouter": ("sk-or-v1-management-0002", "40.00", {"management": True}),
        "siliconflow": ("sk-siliconflow-000000003", "88.88", {}),
        "moonshot": ("sk-moonshot-000000004", "49.58894", {}),
        "openai": ("sk-reseller-000000005", "75.00", {}),
    }
    for type, (secret, amount, extra) in accounts.items():
        balance_emulator.set_balance(secret, amount, **extra)
        make_channel(balance_emulator, type, secret)
    balance_emulator.set_balance("sk-or-v1-plain-0006", "12.50")  # not a management key
    make_channel(balance_emulator, "openrouter", "sk-or-v1-plain-0006", name="openrouter-plain")
    services.create_channel(name="official", type="openai", models=["m"], keys=["sk-official-000000007"])
    make_channel(balance_emulator, "anthropic", "sk-ant-000000008")
    # when
    summary = tasks.refresh_balances.apply().get()
    # then
    assert summary == {"read": 6, "failed": 0}
    shown = {
        k.channel.name: (k.balance, k.balance_currency)
        for k in ChannelKey.objects.select_related("channel").filter(balance__isnull=False)
    }
    assert shown == {
        "deepseek-account": (Decimal("110"), "CNY"),
        "openrouter-account": (Decimal("40"), "USD"),
        "openrouter-plain": (Decimal("12.5"), "USD"),  # its own limit, from /key
        "siliconflow-account": (Decimal("88.88"), "USD"),  # not a .cn host
        "moonshot-account": (Decimal("49.58894"), "USD"),
        "openai-account": (Decimal("75"), "USD"),  # hard limit 100.75 minus 2575 cents used
    }
    assert not ChannelKey.objects.filter(balance__isnull=False, balance_updated_at__isnull=True).exists()
    assert {key for _, key in balance_emulator.requests} <= {s for s, _, _ in accounts.values()} | {
        "sk-or-v1-plain-0006"
    }
    # when an operator looks at the keys
    client.force_login(operator[0])
    page = client.get("/admin/channels_app/channelkey/").content.decode()
    # then
    assert "110 CNY" in page and "49.58894 USD" in page


def test_a_key_below_min_balance_is_disabled_and_comes_back_when_topped_up(balance_emulator):
    # given
    secret = "sk-deepseek-low-000000009"
    balance_emulator.set_balance(secret, "1.20")
    channel = make_channel(balance_emulator, "deepseek", secret, min_balance=Decimal("5"))
    key = channel.keys.get()
    # when
    tasks.refresh_balances.apply()
    # then
    key.refresh_from_db()
    assert (key.state, key.state_reason) == ("auto_disabled", "low_balance")
    event = KeyEvent.objects.get(key=key)
    assert (event.to_state, event.reason, event.source) == ("auto_disabled", "low_balance", "balance")
    assert "1.200000 CNY is below the channel's minimum 5" in event.message
    # when probes run (the upstream still answers a 1-token chat)
    tasks.probe_keys.apply()
    tasks.probe_keys.apply(kwargs={"due_only": True})
    # then they do not undo the balance rule
    key.refresh_from_db()
    assert (key.state, key.state_reason) == ("auto_disabled", "low_balance")
    # when the account is topped up
    balance_emulator.set_balance(secret, "20.00")
    tasks.refresh_balances.apply()
    # then
    key.refresh_from_db()
    assert (key.state, key.state_reason, key.balance) == ("active", "balance_ok", Decimal("20"))


def test_balance_failures_are_logged_with_channel_and_key_never_the_secret(balance_emulator, caplog):
    # given a key the provider does not know
    secret = "sk-moonshot-unknown-000010"
    channel = make_channel(balance_emulator, "moonshot", secret)
    key = channel.keys.get()
    # when
    with caplog.at_level(logging.WARNING, logger="oneproxy.balances"):
        summary = tasks.refresh_balances.apply().get()
    # then
    assert summary == {"read": 0, "failed": 1}
    assert f"channel {channel.pk} key {key.pk}: HTTP 401" in caplog.text and secret not in caplog.text
    key.refresh_from_db()
    assert key.balance is None and key.state == "active"


def test_operators_refresh_a_channels_balances_from_the_admin(balance_emulator, client, operator):
    # given
    balance_emulator.set_balance("sk-siliconflow-000000011", "3.50")
    channel = make_channel(balance_emulator, "siliconflow", "sk-siliconflow-000000011")
    client.force_login(operator[0])
    # when
    response = client.post(
        "/admin/channels_app/channel/", {"action": "refresh_balances", "_selected_action": [channel.pk]}, follow=True
    )
    # then
    assert "Read 1 balance(s); 0 failed" in response.content.decode()
    assert channel.keys.get().balance == Decimal("3.5")
