"""The admin dashboard (oneproxy/dashboard.py): charts from the usage rollups,
top spenders, the key health grid; team admins see their team alone."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from django.utils import timezone

from billing.models import Team
from channels_app.models import ChannelKey
from channels_app.services import create_channel
from tests.billing.events import settled_row

pytestmark = pytest.mark.django_db


def this_hour(second: int) -> datetime:
    """An instant early in the current hour, so that the rows share its point."""
    return timezone.now().astimezone(UTC).replace(minute=0, second=second, microsecond=0)


@pytest.fixture
def world(make_user, operator):
    red, blue = Team.objects.create(name="red"), Team.objects.create(name="blue")
    tess, _ = make_user("tess", role="team_admin", team=red)
    rita, _ = make_user("rita", team=red)
    bert, _ = make_user("bert", team=blue)
    channel = create_channel(
        name="pool-a", type="openai", keys=["sk-provider-key-000000001", "sk-provider-key-000000002"]
    )
    good, bad = channel.keys.order_by("id")
    ChannelKey.objects.filter(pk=bad.pk).update(
        state=ChannelKey.State.AUTO_DISABLED,
        state_reason="invalid_key",
        last_error="Incorrect API key provided: sk-provider-key-000000002",
    )
    common = {"channel": channel, "key": good}
    settled_row(rita, at=this_hour(5), model="gpt-4o", prompt_tokens=100, completion_tokens=10, cost=3_000, **common)
    settled_row(rita, at=this_hour(6), model="gpt-4o", prompt_tokens=50, completion_tokens=5, cost=1_000, **common)
    settled_row(bert, at=this_hour(7), model="claude", prompt_tokens=7, completion_tokens=1, cost=500, **common)
    settled_row(bert, at=this_hour(8), model="claude", status=502, cost=0, **common)
    return {"ops": operator[0], "tess": tess, "rita": rita, "bert": bert, "good": good, "bad": bad}


def charts(response) -> dict:
    text = response.content.decode()
    start = text.index('<script id="dashboard-data" type="application/json">') + len(
        '<script id="dashboard-data" type="application/json">'
    )
    return json.loads(text[start : text.index("</script>", start)])


def test_the_operator_sees_requests_tokens_spend_and_errors_by_model(client, world) -> None:
    # given
    client.force_login(world["ops"])
    # when
    response = client.get("/admin/dashboard/", {"range": "hour", "by": "model"})
    # then
    assert response.status_code == 200
    data = charts(response)
    assert len(data["labels"]) == 48
    by_name = {s["name"]: s for s in data["series"]}
    assert set(by_name) == {"gpt-4o", "claude"}
    assert by_name["gpt-4o"]["requests"][-1] == 2
    assert by_name["gpt-4o"]["tokens"][-1] == 165
    assert by_name["gpt-4o"]["spend"][-1] == pytest.approx(0.004)
    assert by_name["claude"]["error_rate"][-1] == 50.0
    assert by_name["gpt-4o"]["error_rate"][-1] == 0.0
    assert sum(by_name["gpt-4o"]["requests"][:-1]) == 0
    assert response.context["totals"]["requests"] == 4


@pytest.mark.parametrize(("by", "names"), [("team", {"red #", "blue #"}), ("user", {"rita #", "bert #"})])
def test_the_operator_breaks_usage_down_by_team_and_user(client, world, by, names) -> None:
    # given
    client.force_login(world["ops"])
    # when
    data = charts(client.get("/admin/dashboard/", {"range": "day", "by": by}))
    # then
    assert {s["name"].split("#")[0] + "#" for s in data["series"]} == names
    assert len(data["labels"]) == 30
    assert sum(sum(s["requests"]) for s in data["series"]) == 4


def test_months_sum_the_days(client, world) -> None:
    # given
    client.force_login(world["ops"])
    # when
    data = charts(client.get("/admin/dashboard/", {"range": "month", "by": "channel"}))
    # then
    assert len(data["labels"]) == 12
    assert data["labels"][-1] == f"{timezone.now():%Y-%m}"
    (pool,) = data["series"]
    assert pool["name"].startswith("pool-a #")
    assert pool["requests"][-1] == 4


def test_top_spenders_come_biggest_first(client, world) -> None:
    # given
    client.force_login(world["ops"])
    # when
    spenders = client.get("/admin/dashboard/").context["spenders"]
    # then
    assert [(s["name"], s["cost_usd"]) for s in spenders] == [("rita", "0.004000"), ("bert", "0.000500")]


def test_the_key_grid_colours_every_key_by_state_and_masks_errors(client, world) -> None:
    # given
    client.force_login(world["ops"])
    # when
    page = client.get("/admin/dashboard/").content.decode()
    # then
    bad, good = world["bad"], world["good"]
    assert f'class="key-cell key-auto-disabled" href="/admin/channels_app/channelkey/{bad.pk}/change/"' in page
    assert f'class="key-cell key-active" href="/admin/channels_app/channelkey/{good.pk}/change/"' in page
    assert "invalid_key" in page and "Incorrect API key provided: sk-pro***" in page
    assert "sk-provider-key-000000002" not in page and "sk-provider-key-000000001" not in page


def test_a_team_admin_sees_their_team_only_and_no_keys_or_channels(client, world) -> None:
    # given
    client.force_login(world["tess"])
    # when
    response = client.get("/admin/dashboard/", {"by": "channel"})
    # then
    assert response.status_code == 200
    page = response.content.decode()
    data = charts(response)
    assert [s["name"] for s in data["series"]] == ["gpt-4o"]  # by channel is not theirs: by model
    assert [s["name"] for s in response.context["spenders"]] == ["rita"]
    assert response.context["totals"]["requests"] == 2
    assert 'id="team-budget"' in page and "spent this month" in page
    assert 'id="key-health"' not in page and "pool-a" not in page and "bert" not in page
    assert 'value="channel"' not in page and 'value="team"' not in page


def test_members_and_strangers_do_not_get_in(client, world) -> None:
    # when
    anonymous = client.get("/admin/dashboard/")
    client.force_login(world["rita"])
    member = client.get("/admin/dashboard/")
    # then
    assert anonymous.status_code == 302 and member.status_code == 302
    assert member["Location"].startswith("/admin/login/")


def test_the_admin_index_links_the_dashboard(client, world) -> None:
    # given
    client.force_login(world["tess"])
    # when
    page = client.get("/admin/").content.decode()
    # then
    assert 'href="/admin/dashboard/"' in page
