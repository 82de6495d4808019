"""The usage explorer (admin → Usage logs): per-request detail, filters, the
CSV export of what the filters show, totals equal to /api/usage/summary/'s,
and a list that costs the same with a thousand rows as with ten."""

from __future__ import annotations

import csv
import io

import pytest

from billing.admin.usage import CappedCountPaginator, UsageLogAdmin
from billing.models import Team
from channels_app.services import create_channel

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(make_user, operator, usage_row):
    """Operator ops; team red (admin tess, member rita) and blue (bert); a
    channel with one key; usage of both teams, one of them failed."""
    red, blue = Team.objects.create(name="red"), Team.objects.create(name="blue")
    tess, _ = make_user("tess", role="team_admin", team=red)
    rita, rita_token = make_user("rita", team=red)
    bert, _ = make_user("bert", team=blue)
    channel = create_channel(name="upstream-account", type="openai", keys=["sk-provider-key-000000777"])
    key = channel.keys.get()
    common = {"channel": channel, "key": key, "latency_ms": 321, "attempts": 2}
    usage_row(rita, at="2025-03-01T10:00:00+00:00", model="gpt-4o", prompt_tokens=10, cost=1_000, **common)
    usage_row(rita, at="2025-03-02T10:00:00+00:00", model="gpt-4o-mini", prompt_tokens=20, cost=2_000, **common)
    usage_row(
        bert,
        at="2025-03-03T10:00:00+00:00",
        model="gpt-4o",
        status=502,
        error="Upstream error: overloaded sk-pro***",
        prompt_tokens=40,
        cost=0,
        **common,
    )
    return {"ops": operator, "tess": tess, "rita": (rita, rita_token), "bert": bert, "key": key}


def rows_of(response) -> list[dict[str, str]]:
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


def test_an_operator_sees_every_request_with_key_hint_and_error(client, world) -> None:
    # given
    client.force_login(world["ops"][0])
    # when
    page = client.get("/admin/billing/usagelog/").content.decode()
    # then
    assert world["key"].hint in page
    assert "upstream-account" in page
    assert "Upstream error: overloaded sk-pro***" in page
    assert "sk-provider-key-000000777" not in page
    assert 'id="usage-export"' in page


def test_filters_narrow_the_list_and_the_totals(client, world) -> None:
    # given
    client.force_login(world["ops"][0])
    # when
    failed = client.get("/admin/billing/usagelog/", {"outcome": "5xx"}).content.decode()
    window = client.get("/admin/billing/usagelog/", {"since": "2025-03-02", "until": "2025-03-03"}).context
    # then
    assert "Upstream error" in failed
    assert '<td class="field-model">gpt-4o</td>' in failed
    assert '<td class="field-model">gpt-4o-mini</td>' not in failed
    assert window["totals"]["requests"] == 1
    assert window["totals"]["prompt_tokens"] == 20
    assert window["totals"]["cost_usd"] == "0.002000"


def test_totals_are_those_of_the_api_summary(client, api, world) -> None:
    # given
    ops, token = world["ops"]
    client.force_login(ops)
    window = {"since": "2025-03-01T00:00:00Z", "until": "2025-03-03T00:00:00Z"}
    # when
    page = client.get("/admin/billing/usagelog/", {"since": "2025-03-01 00:00", "until": "2025-03-03 00:00"})
    summary = api(token).get("/api/usage/summary/", {"group_by": "model", **window}).json()["total"]
    # then
    totals = page.context["totals"]
    assert totals["requests"] == summary["requests"] == 2
    assert totals["prompt_tokens"] == summary["prompt_tokens"]
    assert totals["cost_usd"] == summary["cost_usd"]


def test_the_csv_export_is_what_the_filters_show(client, world) -> None:
    # given
    client.force_login(world["ops"][0])
    # when
    response = client.get("/admin/billing/usagelog/export.csv", {"model": "gpt-4o"})
    # then
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith('attachment; filename="usage-')
    rows = rows_of(response)
    assert [(r["user"], r["model"], r["status"]) for r in rows] == [
        ("bert", "gpt-4o", "502"),
        ("rita", "gpt-4o", "200"),
    ]
    assert rows[1]["cost_usd"] == "0.001000"
    assert rows[1]["key"] == world["key"].hint
    assert rows[1]["latency_ms"] == "321" and rows[1]["attempts"] == "2"
    assert rows[0]["error"] == "Upstream error: overloaded sk-pro***"


def test_the_csv_export_is_bounded(client, world, monkeypatch) -> None:
    # given
    monkeypatch.setattr(UsageLogAdmin, "export_max_rows", 2)
    client.force_login(world["ops"][0])
    # when
    text = b"".join(client.get("/admin/billing/usagelog/export.csv").streaming_content).decode()
    # then
    lines = text.strip().splitlines()
    assert len(lines) == 4  # header, two rows, the note
    assert lines[-1] == "# cut at 2 rows: narrow the filters"


def test_a_team_admin_explores_and_exports_only_their_team_without_channels(client, world) -> None:
    # given
    client.force_login(world["tess"])
    # when
    page = client.get("/admin/billing/usagelog/")
    rows = rows_of(client.get("/admin/billing/usagelog/export.csv"))
    # then
    text = page.content.decode()
    assert "bert" not in text and "Upstream error" not in text
    assert "upstream-account" not in text and world["key"].hint not in text
    assert page.context["totals"]["requests"] == 2
    assert {r["user"] for r in rows} == {"rita"}
    assert "channel" not in rows[0] and "key" not in rows[0]


def test_a_member_cannot_export(client, world) -> None:
    # given
    client.force_login(world["rita"][0])
    # when
    response = client.get("/admin/billing/usagelog/export.csv")
    # then
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_a_long_list_says_more_than_the_cap_instead_of_counting(client, world, monkeypatch) -> None:
    # given
    monkeypatch.setattr(CappedCountPaginator, "COUNT_CAP", 2)
    client.force_login(world["ops"][0])
    # when
    page = client.get("/admin/billing/usagelog/").content.decode()
    # then
    assert "more than 2 requests" in page


def test_the_list_costs_the_same_queries_for_many_rows(client, world, usage_row, django_assert_max_num_queries) -> None:
    # given: many rows of several users, tokens, channels and keys
    client.force_login(world["ops"][0])
    rita, _ = world["rita"]
    for i in range(60):
        usage_row(rita, at=f"2025-04-01T10:{i % 60:02d}:00+00:00", model=f"m-{i % 7}", key=world["key"])
    # when / then: no query per row (select_related), no full COUNT(*)
    with django_assert_max_num_queries(16) as queries:
        assert client.get("/admin/billing/usagelog/").status_code == 200
    counts = [q["sql"] for q in queries.captured_queries if "COUNT(*)" in q["sql"].upper()]
    assert counts and all("LIMIT" in sql.upper() for sql in counts), counts
