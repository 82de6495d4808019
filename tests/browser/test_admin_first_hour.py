"""An operator's first hour in the admin, in a real browser: the styled admin,
a channel with pasted keys, "Test now", a token whose key is shown once, and
the usage row of a request made with that key."""

from __future__ import annotations

import re

from openai import OpenAI

from billing import services
from billing.models import ModelPrice
from billing.money import to_micro

GOOD_KEY = "sk-upstream-good"
BAD_KEY = "sk-upstream-refused-by-the-emulator"
HASHED_CSS = re.compile(r"/static/admin/css/base\.[0-9a-f]{12}\.css$")


def test_an_operator_sets_up_a_channel_and_a_token(admin_browser, root_operator, openai_emulator):
    # given: a priced model (transactional tests start without the seeded rows) and money to spend
    ModelPrice.objects.update_or_create(
        model="gpt-4o-mini", channel_type="", defaults={"input": "0.15", "output": "0.60"}
    )
    services.topup(root_operator, to_micro("5"))
    b = admin_browser

    # then: the admin is styled: its stylesheet is the collected, hashed one and applies
    stylesheets = [link.get_attribute("href") for link in b.find_all("link[rel=stylesheet]")]
    assert any(HASHED_CSS.search(href) for href in stylesheets), stylesheets
    assert b.style("#header", "display") == "flex"
    assert b.style("#header", "background-color") not in ("", "rgba(0, 0, 0, 0)", "transparent")
    b.screenshot("01-index")

    # when: a channel is added with two pasted keys, pointing at the emulator
    b.open("/admin/channels_app/channel/add/")
    b.fill("#id_name", "emulator")
    b.select("#id_type", "openai")
    b.fill("#id_base_url", openai_emulator.base_url)
    b.fill("#id_models", "gpt-4o-mini")
    b.fill("#id_groups", "default")
    b.fill("#id_new_keys", f"{GOOD_KEY}\n{BAD_KEY}\n")
    b.screenshot("02-channel-add-form")
    b.submit()
    # then
    b.wait_for("#result_list")
    assert any("Added 2 key(s)" in m for m in b.messages()), b.messages()
    assert GOOD_KEY not in b.driver.page_source and BAD_KEY not in b.driver.page_source
    b.screenshot("03-channel-changelist")

    keys_list = b.find("#result_list td.field-keys_health a").get_attribute("href")
    b.find("#result_list th.field-name a").click()
    b.wait_for("#channel_form")
    assert [cell.text for cell in b.find_all("td.field-hint p")] == ["sk-…good", "sk-…ator"]
    assert GOOD_KEY not in b.driver.page_source
    b.screenshot("04-channel-change-form")

    # when: the channel's keys are tested now
    b.driver.get(keys_list)
    b.wait_for("#result_list")
    b.find("#action-toggle").click()
    b.select("select[name=action]", "test_now")
    b.find("button[name=index]").click()
    # then: one answered, the refused one is auto-disabled with the emulator's reason
    b.wait_for("ul.messagelist")
    assert any(m.startswith("1 of 2 key(s) answered.") for m in b.messages()), b.messages()
    states = [cell.text for cell in b.find_all("#result_list td.field-state")]
    assert sorted(states) == ["Active", "Auto Disabled"], states
    probed = [r for r in openai_emulator.requests if r.get("path", "").endswith("/chat/completions")]
    assert len(probed) == 2, openai_emulator.requests
    b.screenshot("05-keys-tested")

    # when: a token is created for root, the user picked with the admin's autocomplete
    b.open("/admin/billing/token/add/")
    b.find(".field-user .select2-selection").click()
    b.wait_for(".select2-search__field").send_keys("root")
    b.until(lambda: [o for o in b.find_all(".select2-results__option") if o.text == "root"])[0].click()
    b.fill("#id_name", "browser-app")
    b.submit()
    # then: its key is shown once, in the message after saving
    b.wait_for("ul.messagelist code")
    key = b.find("ul.messagelist code").text
    assert re.fullmatch(r"sk-[A-Za-z0-9]{48}", key), key
    b.screenshot("06-token-key-shown-once")
    b.find("#result_list a[href*='/change/']").click()
    b.wait_for("#token_form")
    assert key not in b.driver.page_source
    b.open("/admin/billing/token/")
    assert key not in b.driver.page_source

    # when: one relay request is made with that key
    reply = OpenAI(base_url=b.gateway.base_url, api_key=key, max_retries=0).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi there"}]
    )
    assert reply.choices[0].message.content

    # then: its usage row is in the admin, charged
    def usage_rows() -> list:
        b.open("/admin/billing/usagelog/")
        return [row for row in b.find_all("#result_list tbody tr") if "browser-app" in row.text]

    rows = b.until(usage_rows)
    assert len(rows) == 1
    row = rows[0]
    assert row.find_element("css selector", "td.field-model").text == "gpt-4o-mini"
    cost = row.find_element("css selector", "td.field-cost_usd").text
    assert re.fullmatch(r"\$\d+\.\d{6}", cost) and float(cost[1:]) > 0, cost
    b.screenshot("07-usage-changelist")
