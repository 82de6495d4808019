"""A team's period spending is what was charged to it: requests its members
made while members. A member who changes team takes nothing along and
brings nothing in — the relay, /api/me/, the admin and the summaries agree."""

from __future__ import annotations

import openai
import pytest
from django.utils import timezone

from tests.gateway import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def ask(sdk):
    return sdk.chat.completions.create(model="gpt-4o", max_tokens=5, messages=[{"role": "user", "content": "hi"}])


def test_a_member_who_changes_team_is_charged_to_each_team_while_a_member(relay_setup, gateway, api, operator):
    from billing import budgets, services
    from billing.models import Team, UsageLog, User

    # given: alice in red; one request's cost measured
    user = relay_setup["user"]
    sdk = openai.OpenAI(base_url=gateway.base_url, api_key=relay_setup["key"], max_retries=0)
    red = Team.objects.create(name="red")
    User.objects.filter(pk=user.pk).update(team=red)
    gateway.reload()
    ask(sdk)
    one = int(wait_for(lambda: UsageLog.objects.values_list("cost", flat=True).first()))
    ask(sdk)
    wait_for(lambda: UsageLog.objects.count() == 2)
    # and: daily budgets, red's nearly used up, blue's fresh
    Team.objects.filter(pk=red.pk).update(budget=one * 2 + one // 2, budget_period="day")
    blue = Team.objects.create(name="blue", budget=one * 2 + one // 2, budget_period="day")
    _, tess = services.create_user(username="tess", role="team_admin", team=blue)
    # when: an operator moves alice to blue
    moved = api(operator[1]).patch(f"/api/users/{user.pk}/", {"team": "blue"}, format="json")
    assert moved.status_code == 200
    gateway.reload()
    # then: blue has spent nothing, red keeps what alice spent while a member
    me = api(services.issue_access_token(user)).get("/api/me/").json()
    assert (me["team"], me["team_budget_spent_usd"]) == ("blue", "0.000000")
    now = timezone.now()
    assert budgets.budget_status(Team.objects.get(pk=red.pk), now).spent == 2 * one
    # and the relay agrees: two requests fit blue's budget, the third does not
    ask(sdk)
    ask(sdk)
    with pytest.raises(openai.APIStatusError) as refused:
        ask(sdk)
    assert refused.value.status_code == 402 and "team's" in refused.value.message
    wait_for(lambda: UsageLog.objects.count() == 4)
    assert budgets.budget_status(Team.objects.get(pk=blue.pk), now).spent == 2 * one
    assert budgets.budget_status(Team.objects.get(pk=red.pk), now).spent == 2 * one
    # and blue's team admin sees only what was charged to blue
    summary = api(tess).get("/api/usage/summary/?group_by=user").json()
    assert [(r["name"], r["requests"]) for r in summary["results"]] == [("alice", 2)]
    by_team = api(operator[1]).get("/api/usage/summary/?group_by=team").json()
    assert sorted((r["name"], r["requests"]) for r in by_team["results"]) == [("blue", 2), ("red", 2)]
    # and back in red, red's budget has room for none of a whole request more
    User.objects.filter(pk=user.pk).update(team=red)
    gateway.reload()
    with pytest.raises(openai.APIStatusError) as refused_again:
        ask(sdk)
    assert refused_again.value.status_code == 402
