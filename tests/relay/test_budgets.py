"""User and team budgets per period are enforced at hold time (402)."""

from __future__ import annotations

import openai
import pytest

from tests.gateway import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def ask(sdk):
    return sdk.chat.completions.create(model="gpt-4o", max_tokens=5, messages=[{"role": "user", "content": "hi"}])


@pytest.mark.parametrize("subject", ["user", "team"])
def test_budget_refuses_once_the_period_allowance_is_used(relay_setup, gateway, subject):
    # given: a daily budget that covers two requests and a bit
    from billing.models import Team, UsageLog, User

    user = relay_setup["user"]
    sdk = openai.OpenAI(base_url=gateway.base_url, api_key=relay_setup["key"], max_retries=0)
    ask(sdk)
    one = wait_for(lambda: UsageLog.objects.values_list("cost", flat=True).first())
    if subject == "user":
        # Spending so far (one request) counts against the new budget.
        User.objects.filter(pk=user.pk).update(budget=one * 3 + one // 2, budget_period="day")
    else:
        # A team counts what its members spend while members: the request
        # before joining is not the team's.
        team = Team.objects.create(name="t", budget=one * 2 + one // 2, budget_period="day")
        User.objects.filter(pk=user.pk).update(team=team)
    gateway.reload()
    # when
    ask(sdk)
    ask(sdk)
    with pytest.raises(openai.APIStatusError) as refused:
        ask(sdk)
    # then
    assert refused.value.status_code == 402
    assert "budget" in refused.value.message
    wait_for(lambda: UsageLog.objects.count() == 3)
