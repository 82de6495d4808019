"""The encryption key generated beside the data it protects is warned about
in service mode; the budget message says "daily" (issue 13, defect 16)."""

from __future__ import annotations

from pathlib import Path

from oneproxy.env import generated_secret_path, key_beside_data
from relay.ledger import _budget_refusal


def test_service_mode_warns_when_the_key_file_is_beside_the_database(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("ONEPROXY_ENCRYPTION_KEY", raising=False)
    monkeypatch.delenv("ONEPROXY_ENCRYPTION_KEY_FILE", raising=False)
    key_file = generated_secret_path("ONEPROXY_ENCRYPTION_KEY", tmp_path)
    assert key_file == tmp_path / "oneproxy_encryption_key"
    warning = key_beside_data(True, key_file, tmp_path / "db.sqlite3")
    assert warning and "beside the SQLite database" in warning
    assert "in the data directory" in (key_beside_data(True, key_file, None) or "")
    # embedded mode (one machine, `make run`) and a key from the environment are fine
    assert key_beside_data(False, key_file, tmp_path / "db.sqlite3") is None
    monkeypatch.setenv("ONEPROXY_ENCRYPTION_KEY", "x")
    assert generated_secret_path("ONEPROXY_ENCRYPTION_KEY", tmp_path) is None


def test_the_daily_budget_message_is_spelled_right():
    assert "Your daily budget is used up" in str(_budget_refusal(("user", 1), "day", 10, 5))
    assert "Your team's weekly budget" in str(_budget_refusal(("team", 1), "week", 10, 5))
