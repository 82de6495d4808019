"""A Responses API stream ends cleanly on its terminal event, as OpenAI's does
(no [DONE]), and an incomplete answer is billed (issue 13, defect 12)."""

from __future__ import annotations

import openai
import pytest

from tests.gateway import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_sdk_reads_a_whole_responses_stream_without_an_error(relay_setup, gateway):
    from billing.models import UsageLog

    sdk = openai.OpenAI(base_url=gateway.base_url, api_key=relay_setup["key"], max_retries=0)
    events = list(sdk.responses.create(model="gpt-4o-mini", input="hello", stream=True))
    assert events[-1].type == "response.completed"
    assert not any(e.type == "error" for e in events)
    row = wait_for(lambda: UsageLog.objects.first())
    assert row.error == "" and row.completion_tokens == 5 and row.cost > 0


def test_an_incomplete_responses_stream_is_billed_for_what_it_used(relay_setup, gateway):
    from billing.models import UsageLog

    sdk = openai.OpenAI(base_url=gateway.base_url, api_key=relay_setup["key"], max_retries=0)
    events = list(sdk.responses.create(model="gpt-4o-mini", input="hello", stream=True, max_output_tokens=2))
    assert events[-1].type == "response.incomplete"
    row = wait_for(lambda: UsageLog.objects.first())
    assert row.error == "" and row.completion_tokens == 2 and not row.estimated
