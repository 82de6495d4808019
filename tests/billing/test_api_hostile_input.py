"""Huge integers, oversized bodies and unknown paths on /api/ answer in the
documented JSON error shape, never a 500 or an HTML page (issue 13, defect 9)."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

HUGE = "9" * 30


def _error(response) -> dict:
    assert response["Content-Type"] == "application/json", response.content[:200]
    body = response.json()
    assert set(body) == {"error"} and {"message", "type", "code"} <= set(body["error"])
    return body["error"]


@pytest.mark.parametrize(
    "path",
    [
        f"/api/usage/?offset={HUGE}",
        f"/api/usage/?user={HUGE}",
        f"/api/ledger/?token={HUGE}",
        f"/api/users/?offset={HUGE}",
        f"/api/users/{HUGE}/",
        f"/api/tokens/{HUGE}/",
        f"/api/channels/{HUGE}/",
    ],
)
def test_huge_integers_are_a_400_or_404_in_json(operator, path):
    _, token = operator
    response = Client().get(path, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code in (400, 404), response.content[:300]
    _error(response)


def test_a_huge_limit_is_capped(operator):
    _, token = operator
    response = Client().get(f"/api/users/?limit={HUGE}", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200
    assert "limit=1000" in (response.json()["next"] or "limit=1000")


def test_an_oversized_body_is_a_json_400(operator, settings):
    _, token = operator
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    body = '{"username": "' + "x" * 20_000 + '"}'
    response = Client().post(
        "/api/users/", data=body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert response.status_code in (400, 413)
    assert _error(response)["code"] == "request_too_large"


def test_an_unknown_api_path_is_a_json_404(operator):
    _, token = operator
    response = Client().get("/api/no-such-thing/", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 404
    _error(response)
