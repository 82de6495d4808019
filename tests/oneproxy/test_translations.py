"""English and Simplified Chinese: the catalogues are complete, their .mo
files compiled from the .po files as they stand and current with the code;
the admin follows the browser or the user's own setting; the relay's errors
follow Accept-Language."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import polib  # type: ignore[import-untyped]
import pytest
import requests
from django.conf import settings

ROOT = Path(settings.BASE_DIR)
CATALOGUES = [
    ROOT / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po",
    ROOT / "relay" / "locale" / "zh_Hans" / "LC_MESSAGES" / "relay.po",
]
PLACEHOLDER = re.compile(r"%\(\w+\)[sdr]|\{\w*\}")


@pytest.mark.parametrize("po_path", CATALOGUES, ids=lambda p: p.name)
def test_every_message_is_translated_with_its_placeholders(po_path: Path) -> None:
    po = polib.pofile(str(po_path))
    assert len(po) > 40
    assert [e.msgid for e in po.untranslated_entries()] == []
    assert [e.msgid for e in po.fuzzy_entries()] == []
    for entry in po.translated_entries():
        translations = entry.msgstr_plural.values() if entry.msgid_plural else [entry.msgstr]
        for text in translations:
            assert sorted(PLACEHOLDER.findall(text)) == sorted(PLACEHOLDER.findall(entry.msgid)), entry.msgid


@pytest.mark.parametrize("po_path", CATALOGUES, ids=lambda p: p.name)
def test_the_mo_file_is_compiled_from_the_po_file(po_path: Path) -> None:
    po = polib.pofile(str(po_path))
    mo = polib.mofile(str(po_path.with_suffix(".mo")))

    def pairs(catalogue) -> dict:
        return {
            (e.msgctxt, e.msgid): (tuple(sorted(e.msgstr_plural.items())) if e.msgid_plural else e.msgstr)
            for e in catalogue
            if e.msgid and not e.obsolete and "fuzzy" not in e.flags
        }

    assert pairs(mo) == pairs(po), "stale .mo: run `make messages`"


def test_the_catalogues_hold_every_marked_string(tmp_path: Path) -> None:
    """Extracts the strings again, as `make messages` does, into a copy of
    the code, and finds none missing from the committed catalogues."""
    missing_tools = [tool for tool in ("xgettext", "msgmerge", "msgfmt") if shutil.which(tool) is None]
    if missing_tools:
        message = f"GNU gettext missing ({', '.join(missing_tools)}): apt-get install gettext"
        if os.environ.get("ONEPROXY_FAIL_ON_SKIP") == "1":
            pytest.fail(message)
        pytest.skip(message)
    # given: a copy of the code and its catalogues
    copy = tmp_path / "repo"
    copy.mkdir()
    names = ["Makefile", "manage.py", "billing", "channels_app", "core", "oneproxy", "relay", "locale"]
    for name in names:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, copy / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "static"))
        else:
            shutil.copy2(source, copy / name)
    (copy / "oneproxy" / "static").mkdir(exist_ok=True)
    env = {**os.environ, "DATABASE_URL": "", "REDIS_URL": "", "ONEPROXY_DATA_DIR": str(tmp_path / "data")}
    # when
    subprocess.run(
        # this venv's tools; -o: do not build a venv in the copy
        ["make", "--no-print-directory", "-o", ".venv/.dev", "messages", f"BIN={Path(sys.executable).parent}"],
        cwd=copy,
        env={**env, "MAKEFLAGS": ""},
        check=True,
        capture_output=True,
        timeout=120,
    )
    # then
    for po_path in CATALOGUES:
        fresh = polib.pofile(str(copy / po_path.relative_to(ROOT)))
        committed = {e.msgid for e in polib.pofile(str(po_path))}
        assert sorted(e.msgid for e in fresh if e.msgid not in committed) == [], "run `make messages`"
        assert [e.msgid for e in fresh.untranslated_entries()] == [], "translate the new entries"


# -- the admin -------------------------------------------------------------------


@pytest.mark.django_db
def test_the_admin_speaks_the_browsers_language(client, operator) -> None:
    # given
    client.force_login(operator[0])
    # when
    chinese = client.get("/admin/", headers={"accept-language": "zh-CN,zh;q=0.9,en;q=0.5"})
    english = client.get("/admin/", headers={"accept-language": "en-US,en;q=0.9"})
    # then
    assert chinese["Content-Language"] == "zh-hans"
    assert "仪表盘" in chinese.content.decode() and "渠道" in chinese.content.decode()
    assert "Dashboard" in english.content.decode() and "仪表盘" not in english.content.decode()


@pytest.mark.django_db
def test_the_users_own_language_wins_and_they_set_it_in_the_header(client, operator) -> None:
    # given
    user = operator[0]
    client.force_login(user)
    # when
    saved = client.post("/admin/language/", {"language": "zh-hans", "next": "/admin/billing/usagelog/"})
    page = client.get("/admin/billing/usagelog/", headers={"accept-language": "en"})
    client.post("/admin/language/", {"language": "", "next": "https://elsewhere.example/"})
    back = client.get("/admin/", headers={"accept-language": "en"})
    # then
    assert saved.status_code == 302 and saved["Location"] == "/admin/billing/usagelog/"
    assert "用量日志" in page.content.decode()
    user.refresh_from_db()
    assert user.language == ""
    assert "仪表盘" not in back.content.decode()


@pytest.mark.django_db
def test_a_user_sets_their_language_on_their_own_page(client, make_user) -> None:
    # given
    from billing.models import Team

    tess, _ = make_user("tess", role="team_admin", team=Team.objects.create(name="red"))
    client.force_login(tess)
    # when
    client.post(
        f"/admin/billing/user/{tess.pk}/change/",
        {"username": "tess", "email": "", "is_active": "on", "language": "zh-hans"},
    )
    # then
    tess.refresh_from_db()
    assert tess.language == "zh-hans"
    assert "团队" in client.get("/admin/").content.decode()


# -- the relay ---------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_relay_answers_errors_in_the_clients_language(relay_setup, gateway) -> None:
    # given
    url = f"{gateway.base_url}/chat/completions"
    body = b'{"model": "no-such-model", "messages": [{"role": "user", "content": "a"}]}'
    auth = {"Authorization": f"Bearer {relay_setup['key']}", "Content-Type": "application/json"}
    # when
    chinese = requests.post(url, data=body, headers={**auth, "Accept-Language": "zh-CN,zh;q=0.9"}, timeout=10)
    english = requests.post(url, data=body, headers={**auth, "Accept-Language": "en;q=1, zh;q=0.5"}, timeout=10)
    plain = requests.post(url, data=body, headers=auth, timeout=10)
    no_key = requests.post(url, data=body, headers={"Accept-Language": "zh-Hans"}, timeout=10)
    # then
    request_id = chinese.headers["X-Request-Id"]
    assert chinese.status_code == 404
    assert (
        chinese.json()["error"]["message"] == f"模型 'no-such-model' 不存在，或你无权使用它。（请求 ID：{request_id}）"
    )
    assert chinese.json()["error"]["code"] == "model_not_found"  # codes stay as documented
    assert english.json()["error"]["message"].startswith("The model 'no-such-model' does not exist")
    assert plain.json()["error"]["message"] == english.json()["error"]["message"].replace(
        english.headers["X-Request-Id"], plain.headers["X-Request-Id"]
    )
    assert no_key.json()["error"]["message"].startswith("未提供 API 密钥。")


def test_accept_language_picks_the_most_preferred() -> None:
    from relay.i18n import CHINESE, client_language

    assert client_language(b"zh-CN,zh;q=0.9,en;q=0.8") == CHINESE
    assert client_language(b"zh-TW") == CHINESE
    assert client_language(b"en-US,zh;q=0.9") is None
    assert client_language(b"fr;q=0.2, zh-Hans;q=0.8") == CHINESE
    assert client_language(b"*") is None
    assert client_language(None) is None
    assert client_language(b"zh;q=oops,en") is None


def test_terms_inside_messages_are_translated_too() -> None:
    from relay.i18n import CHINESE, N_, Term, say

    template = N_("Your {period} budget is used up: this request may cost up to {cost}, {left} left this period.")
    params = {"period": Term("daily"), "cost": "$0.01", "left": "$0.00"}
    assert say(template, params, None).startswith("Your daily budget is used up")
    assert say(template, params, CHINESE) == "你的每日预算已用完：此请求最多可能花费 $0.01，本周期剩余 $0.00。"
