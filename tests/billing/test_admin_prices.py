"""Model prices are edited straight in the list, by operators."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing.models import ModelPrice

pytestmark = pytest.mark.django_db

PRICES = "/admin/billing/modelprice/"


def test_prices_are_edited_in_the_list(client, operator) -> None:
    # given
    client.force_login(operator[0])
    price = ModelPrice.objects.create(model="house-model-x", input=Decimal("1.5"), output=Decimal(3))
    row = {"input": "2.25", "output": "4", "cached_input": "", "audio": "", "per_request": "0", "per_image": "0"}
    data = {
        "form-TOTAL_FORMS": 1,
        "form-INITIAL_FORMS": 1,
        "form-MIN_NUM_FORMS": 0,
        "form-MAX_NUM_FORMS": 1000,
        "form-0-id": price.pk,
        **{f"form-0-{name}": value for name, value in row.items()},
        "_save": "Save",
    }
    # when
    page = client.get(f"{PRICES}?q=house-model-x")
    response = client.post(f"{PRICES}?q=house-model-x", data)
    # then
    assert page.status_code == 200 and 'name="form-0-input"' in page.content.decode()
    assert response.status_code == 302, response.content
    price.refresh_from_db()
    assert (price.input, price.output, price.cached_input) == (Decimal("2.25"), Decimal(4), None)


def test_a_price_for_one_channel_type(client, operator) -> None:
    # given
    client.force_login(operator[0])
    form = {"model": "house-model-y", "channel_type": "deepseek", "input": "0.27", "output": "1.1"}
    form |= {"cached_input": "", "audio": "", "per_request": "0", "per_image": "0"}
    # when
    response = client.post(f"{PRICES}add/", form)
    refused = client.post(f"{PRICES}add/", {**form, "model": "house-model-z", "channel_type": "nope"})
    # then
    assert response.status_code == 302, response.content
    assert ModelPrice.objects.get(model="house-model-y").channel_type == "deepseek"
    assert refused.status_code == 200
    assert not ModelPrice.objects.filter(model="house-model-z").exists()
