"""The operator's cockpit in a real browser: the dashboard's charts drawn from
real relay requests, the key-health grid with a disabled key in its colour,
the same pages in Chinese, and a team admin who sees only their team. Every
request the browser makes is recorded: none leaves the gateway."""

from __future__ import annotations

from urllib.parse import urlsplit

from openai import OpenAI

from billing import history, services
from billing.models import ModelPrice, Team
from billing.money import to_micro
from channels_app import probe
from channels_app.models import ChannelKey
from channels_app.services import create_channel
from tests.browser.conftest import ROOT_PASSWORD
from tests.gateway import wait_for

GOOD_KEY = "sk-upstream-good"
BAD_KEY = "sk-upstream-refused-by-the-emulator"
RED = "rgb(214, 69, 65)"  # .key-auto-disabled in oneproxy/static/oneproxy/dashboard.css
GREEN = "rgb(46, 158, 79)"  # .key-active

CHART_DATA = """
const chart = Chart.getChart(document.getElementById(arguments[0]));
return chart && {labels: chart.data.labels, sets: chart.data.datasets.map(d => ({label: d.label, data: d.data}))};
"""
INKED_PIXELS = """
const canvas = document.getElementById(arguments[0]);
const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
let inked = 0;
for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) inked++;
return inked;
"""


def pool(emulator, gateway) -> tuple:
    """A priced model and a channel on the emulator with a good key and a
    refused one, probed: the refused key is auto-disabled by the real rules."""
    ModelPrice.objects.update_or_create(
        model="gpt-4o-mini", channel_type="", defaults={"input": "0.15", "output": "0.60"}
    )
    channel = create_channel(
        name="emulator", type="openai", base_url=emulator.base_url, models=["gpt-4o-mini"], keys=[GOOD_KEY, BAD_KEY]
    )
    probe.probe_keys(channel_ids=[channel.pk])
    bad = ChannelKey.objects.get(channel=channel, state=ChannelKey.State.AUTO_DISABLED)
    gateway.reload()
    return channel, bad


def chat(gateway, key: str, times: int) -> None:
    gateway.reload()  # the new token and balance, now rather than within the second
    client = OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)
    for _ in range(times):
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])
        assert reply.choices[0].message.content


def settled(requests: int) -> None:
    """Wait until the rollups (what the dashboard reads) count ``requests``."""
    wait_for(lambda: history.summary("model", since=None, until=None).total["requests"] >= requests or None)


def assert_only_the_gateway(b) -> list[str]:
    urls = b.requested_urls()
    gateway = urlsplit(b.gateway.url).netloc
    outside = [u for u in urls if urlsplit(u).scheme not in ("data", "blob") and urlsplit(u).netloc != gateway]
    assert urls and outside == [], outside
    return urls


def test_the_dashboard_draws_real_traffic_and_the_key_pool(admin_browser, root_operator, openai_emulator):
    # given: three real requests through the relay, and a key the probe disabled
    b = admin_browser
    _channel, bad = pool(openai_emulator, b.gateway)
    services.topup(root_operator, to_micro("5"))
    _token, key = services.create_token(user=root_operator, name="browser-app")
    chat(b.gateway, key, 3)
    settled(3)

    # when
    b.open("/admin/dashboard/?range=hour&by=model")
    b.wait_for("#chart-requests")
    requests = b.until(lambda: b.driver.execute_script(CHART_DATA, "chart-requests"))
    spend = b.driver.execute_script(CHART_DATA, "chart-spend")
    errors = b.driver.execute_script(CHART_DATA, "chart-error_rate")
    # then: the charts hold the requests, drawn on their canvases
    assert [s["label"] for s in requests["sets"]] == ["gpt-4o-mini"]
    assert len(requests["labels"]) == 48
    assert requests["sets"][0]["data"][-1] == 3 and sum(requests["sets"][0]["data"]) == 3
    assert spend["sets"][0]["data"][-1] > 0
    assert errors["sets"][0]["data"][-1] == 0
    for canvas in ("chart-requests", "chart-tokens", "chart-spend", "chart-error_rate"):
        assert b.driver.execute_script(INKED_PIXELS, canvas) > 500, canvas
    assert b.find("#dashboard-totals").text.split("\n")[1] == "3"
    assert "root" in b.find("#top-spenders tbody").text

    # then: the grid shows the refused key red, with its reason, and the good one green
    cell = b.find(f'#key-health a[data-key-id="{bad.pk}"]')
    assert b.style(f'#key-health a[data-key-id="{bad.pk}"]', "background-color") == RED
    assert "auto_disabled" not in cell.get_attribute("title")  # the label, not the code
    assert "Auto Disabled" in cell.get_attribute("title") and bad.state_reason in cell.get_attribute("title")
    assert BAD_KEY not in b.driver.page_source and GOOD_KEY not in b.driver.page_source
    good = b.find_all('#key-health a[data-state="active"]')
    assert len(good) == 1 and b.style('#key-health a[data-state="active"]', "background-color") == GREEN
    b.screenshot("01-dashboard-by-model")
    urls = assert_only_the_gateway(b)
    assert any("/static/oneproxy/vendor/chartjs/chart.umd.min" in u for u in urls), urls

    # when: by channel over the month, then a click on the red key
    b.open("/admin/dashboard/?range=month&by=channel")
    month = b.until(lambda: b.driver.execute_script(CHART_DATA, "chart-requests"))
    assert [s["label"].split(" #")[0] for s in month["sets"]] == ["emulator"]
    assert month["sets"][0]["data"][-1] == 3
    b.screenshot("02-dashboard-by-channel-month")
    b.find(f'#key-health a[data-key-id="{bad.pk}"]').click()
    # then
    b.wait_for("#channelkey_form")
    assert f"/admin/channels_app/channelkey/{bad.pk}/change/" in b.driver.current_url
    b.screenshot("03-key-from-the-grid")

    # when: the usage explorer, filtered to this hour
    b.open("/admin/billing/usagelog/?outcome=ok")
    b.wait_for("#result_list")
    # then: three rows with the key's hint, totals as the API's
    rows = b.find_all("#result_list tbody tr")
    assert len(rows) == 3
    assert {r.find_element("css selector", "td.field-key_hint").text for r in rows} == {"sk-…good"}
    assert b.find("#usage-totals tbody td").text == "3"
    b.screenshot("04-usage-explorer")
    assert_only_the_gateway(b)


def test_the_same_pages_in_chinese(admin_browser, root_operator, openai_emulator):
    # given
    b = admin_browser
    _channel, bad = pool(openai_emulator, b.gateway)
    services.topup(root_operator, to_micro("5"))
    _token, key = services.create_token(user=root_operator, name="browser-app")
    chat(b.gateway, key, 2)
    settled(2)

    # when: root picks Chinese in the header's language menu
    b.open("/admin/")
    b.select("#id_language_switch", "zh-hans")
    b.until(lambda: "仪表盘" in b.find("#user-tools").text)
    # then: the index is in Chinese, and stays so (the user's setting)
    assert "渠道" in b.find("#content-main").text
    root_operator.refresh_from_db()
    assert root_operator.language == "zh-hans"
    b.screenshot("01-index-zh")

    # when
    b.open("/admin/dashboard/")
    data = b.until(lambda: b.driver.execute_script(CHART_DATA, "chart-requests"))
    # then: Chinese labels, the same data
    assert b.find("#content h1").text == "仪表盘"
    headings = [h.text for h in b.find_all(".chart-box h2")]
    assert headings == ["请求数", "token 数（提示 + 补全）", "花费（美元）", "错误率（%）"]
    assert b.find("#key-health h2").text == "密钥池"
    assert "已自动禁用" in b.find(f'#key-health a[data-key-id="{bad.pk}"]').get_attribute("title")
    assert b.style(f'#key-health a[data-key-id="{bad.pk}"]', "background-color") == RED
    assert data["sets"][0]["data"][-1] == 2
    assert "花费最多的用户" in b.find("#top-spenders").text
    b.screenshot("02-dashboard-zh")

    # when: the usage explorer and a key
    b.open("/admin/billing/usagelog/")
    b.wait_for("#result_list")
    # then
    assert b.find("#content h1").text.startswith("选择")  # Django's own "Select … to view", in Chinese
    assert "用量日志" in b.driver.title
    assert "结果" in b.find("#changelist-filter").text and "导出 CSV" in b.find(".object-tools").text
    b.screenshot("03-usage-explorer-zh")
    b.open(f"/admin/channels_app/channelkey/{bad.pk}/change/")
    b.wait_for("#channelkey_form")
    assert "健康状况" in b.find("#channelkey_form").text
    b.screenshot("04-key-zh")
    assert_only_the_gateway(b)


def test_a_team_admin_sees_only_their_team(browser, openai_emulator):
    # given: team red (admin tess, member rita) and blue (member bert), both with traffic
    b = browser
    pool(openai_emulator, b.gateway)
    red, blue = Team.objects.create(name="red"), Team.objects.create(name="blue")
    services.create_user(username="tess", password=ROOT_PASSWORD, role="team_admin", team=red)
    rita, _ = services.create_user(username="rita", team=red)
    bert, _ = services.create_user(username="bert", team=blue)
    for user, times in ((rita, 2), (bert, 1)):
        services.topup(user, to_micro("5"))
        _token, key = services.create_token(user=user, name=f"{user.username}-app")
        chat(b.gateway, key, times)
    settled(3)

    # when
    b.login("tess", ROOT_PASSWORD)
    # then: the index lists the team's pages only
    index = b.find("#content-main").text
    assert "Channels" not in index and "Model prices" not in index and "Ledger entries" not in index
    b.screenshot("01-team-admin-index")

    b.open("/admin/billing/user/")
    users = {a.text for a in b.find_all("#result_list th.field-username a")}
    assert users == {"rita", "tess"}
    b.screenshot("02-team-users")

    b.open("/admin/billing/token/")
    tokens = {c.text for c in b.find_all("#result_list th.field-name a")}
    assert tokens == {"rita-app"}
    b.screenshot("03-team-tokens")

    b.open("/admin/billing/usagelog/")
    rows = b.find_all("#result_list tbody tr")
    assert len(rows) == 2
    assert {r.find_element("css selector", "td.field-user").text for r in rows} == {"rita"}
    assert not b.find_all("td.field-channel") and not b.find_all("td.field-key_hint")
    assert b.find("#usage-totals tbody td").text == "2"
    b.screenshot("04-team-usage")

    b.open("/admin/dashboard/?by=user")
    data = b.until(lambda: b.driver.execute_script(CHART_DATA, "chart-requests"))
    assert [s["label"].split(" #")[0] for s in data["sets"]] == ["rita"]
    assert sum(data["sets"][0]["data"]) == 2
    assert not b.find_all("#key-health")
    assert "bert" not in b.driver.page_source and "emulator" not in b.driver.page_source
    b.screenshot("05-team-dashboard")

    b.open(f"/admin/billing/user/{bert.pk}/change/")
    assert "bert" not in b.find("#content").text or "doesn’t exist" in b.driver.page_source
    assert_only_the_gateway(b)
