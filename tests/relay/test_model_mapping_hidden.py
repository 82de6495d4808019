"""With model mapping the client sees the model it asked for, in bodies and
stream chunks; the usage row keeps both names (issue 13, defect 14)."""

from __future__ import annotations

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from openai.types.responses import ResponseCompletedEvent

from tests.gateway import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def mapped(relay_setup):
    from channels_app.models import Channel

    Channel.objects.filter(pk=relay_setup["channel"].pk).update(model_mapping={"gpt-4o-mini": "upstream-model-x"})
    relay_setup["emulator"].models.append("upstream-model-x")
    return relay_setup


def test_the_upstream_model_name_never_reaches_the_client(mapped, gateway):
    from billing.models import UsageLog

    sdk = openai.OpenAI(base_url=gateway.base_url, api_key=mapped["key"], max_retries=0)
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
    whole = sdk.chat.completions.create(model="gpt-4o-mini", messages=messages)
    chunks = list(sdk.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True))
    events = list(sdk.responses.create(model="gpt-4o-mini", input="hi", stream=True))
    assert mapped["emulator"].requests[0]["json"]["model"] == "upstream-model-x"
    assert whole.model == "gpt-4o-mini"
    assert {c.model for c in chunks} == {"gpt-4o-mini"}
    last = events[-1]
    assert isinstance(last, ResponseCompletedEvent) and last.response.model == "gpt-4o-mini"
    row = wait_for(lambda: UsageLog.objects.order_by("id").first())
    assert (row.model, row.upstream_model) == ("gpt-4o-mini", "upstream-model-x")
