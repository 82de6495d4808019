"""No silent misrouting: a channel type without a provider adapter is never
created or enabled in the admin, and one left from before is not routed."""

from __future__ import annotations

import logging

import openai
import pytest

from channels_app.models import Channel
from tests.channels_app.test_admin_channels import CHANNELS, channel_form

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("channel_type", ["azure", "gemini", "ollama"])
def test_the_admin_form_refuses_a_type_without_an_adapter(client, operator, channel_type):
    # given
    client.force_login(operator[0])
    # when
    response = client.post(
        f"{CHANNELS}add/", channel_form(type=channel_type, base_url="https://acme.example.com", models="m")
    )
    # then: the form comes back with the error on the type field, naming it
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert f'"{channel_type}" has no provider adapter' in errors["type"][0]
    assert not Channel.objects.filter(type=channel_type).exists()


def test_the_admin_enable_action_skips_a_type_without_an_adapter(client, operator):
    # given: an azure channel left from before, disabled
    client.force_login(operator[0])
    legacy = Channel.objects.create(name="legacy", type="azure", base_url="https://a.example.com", status="disabled")
    # when
    response = client.post(CHANNELS, {"action": "enable", "_selected_action": [legacy.pk]}, follow=True)
    # then
    legacy.refresh_from_db()
    assert legacy.status == "disabled"
    assert any('"azure" has no provider adapter' in str(m) for m in response.context["messages"])


@pytest.mark.django_db(transaction=True)
def test_an_existing_channel_without_an_adapter_is_skipped_with_a_warning(relay_setup, gateway, caplog):
    # given: an enabled gemini channel from before adapters were checked, listing a model of its own
    from channels_app.services import create_channel

    create_channel(name="legacy-gemini", type="gemini", models=["gemini-2.5-flash"], keys=["AIza-legacy-key"])
    # when
    with caplog.at_level(logging.WARNING, logger="oneproxy.channels"):
        gateway.reload()
    sdk = openai.OpenAI(base_url=gateway.base_url, api_key=relay_setup["key"], max_retries=0)
    with pytest.raises(openai.NotFoundError) as missing:
        sdk.chat.completions.create(model="gemini-2.5-flash", messages=[{"role": "user", "content": "hi"}])
    # then: not routed (no OpenAI body sent to a Gemini upstream), and the operator is told why
    assert missing.value.code == "model_not_found"
    assert any("legacy-gemini" in r.getMessage() and "no provider adapter" in r.getMessage() for r in caplog.records)
