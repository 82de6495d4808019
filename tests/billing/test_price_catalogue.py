"""The list-price catalogue migration: sourced, dated, never overwriting an operator's price."""

from __future__ import annotations

import importlib
from datetime import date
from decimal import Decimal

import pytest
from django.apps import apps

from billing.models import ModelPrice

pytestmark = pytest.mark.django_db

catalogue = importlib.import_module("billing.migrations.0005_price_catalogue")


def prices(model: str) -> tuple:
    p = ModelPrice.objects.get(model=model, channel_type="")
    return p.input, p.output, p.cached_input, p.as_of


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("claude-sonnet-4-5", ("3", "15", "0.3")),
        ("gemini-2.5-flash", ("0.3", "2.5", "0.03")),
        ("deepseek-chat", ("0.28", "0.42", "0.028")),
        ("qwen-plus", ("0.4", "1.2", None)),
        ("glm-4.6", ("0.6", "2.2", "0.11")),
        ("kimi-k2.5", ("0.6", "3", "0.1")),
        ("ernie-4.5-300b-a47b", ("0.28", "1.1", None)),
        ("mistral-large-latest", ("0.5", "1.5", "0.05")),
        ("gpt-5-mini", ("0.25", "2", "0.025")),
    ],
)
def test_each_vendor_is_priced_per_million_tokens(model, expected) -> None:
    # then
    inp, out, cached = expected
    assert prices(model) == (
        Decimal(inp),
        Decimal(out),
        None if cached is None else Decimal(cached),
        date(2026, 11, 28),
    )
    assert ModelPrice.objects.get(model=model).source.startswith("litellm 1.110.2 model_prices_and_context_window")


def test_the_catalogue_covers_every_vendor_asked_for() -> None:
    # then
    vendors = {
        "gpt-": 10, "claude-": 5, "gemini-": 5, "deepseek-": 3, "qwen": 5, "glm-": 5, "kimi-": 2, "ernie-": 3,
        "mistral-": 3,
    }  # fmt: skip
    for prefix, at_least in vendors.items():
        assert ModelPrice.objects.filter(model__startswith=prefix, source__startswith="litellm").count() >= at_least


def test_seeded_rows_that_match_get_their_source_recorded() -> None:
    # then: gpt-4o came from the 0003 seed with the same prices
    assert ModelPrice.objects.get(model="gpt-4o").source.endswith(": gpt-4o")
    # the default price is ours, not a list price
    assert ModelPrice.objects.get(model="*").source == ""


def test_rerunning_never_overwrites_an_operator_price() -> None:
    # given: an operator re-priced one model and deleted another
    ModelPrice.objects.filter(model="deepseek-chat").update(input=Decimal("9"), source="")
    ModelPrice.objects.filter(model="kimi-k2.5").delete()
    # when
    catalogue.seed(apps, None)
    # then
    edited = ModelPrice.objects.get(model="deepseek-chat")
    assert (edited.input, edited.source) == (Decimal(9), "")
    assert prices("kimi-k2.5") == (Decimal("0.6"), Decimal(3), Decimal("0.1"), date(2026, 11, 28))


def test_editing_a_price_in_the_admin_clears_its_source(client, operator) -> None:
    # given
    client.force_login(operator[0])
    price = ModelPrice.objects.get(model="glm-4.6")
    form = {"model": "glm-4.6", "channel_type": "", "input": "0.7", "output": "2.2", "cached_input": "0.11"}
    form |= {"audio": "", "per_request": "0", "per_image": "0", "source": price.source, "as_of": "2026-11-28"}
    # when
    response = client.post(f"/admin/billing/modelprice/{price.pk}/change/", form)
    # then
    assert response.status_code == 302, response.content
    price.refresh_from_db()
    assert (price.input, price.source, price.as_of) == (Decimal("0.7"), "", None)
