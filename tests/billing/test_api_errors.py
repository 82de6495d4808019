"""Every /api/ failure is a JSON {"error": {message, type, code}} with the right status, never a 500."""

from __future__ import annotations

import pytest

from billing import services

pytestmark = pytest.mark.django_db


def _error(response) -> dict:
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    assert {"message", "type", "code"} <= set(body["error"])
    return body["error"]


@pytest.mark.parametrize("path", ["/api/me/", "/api/users/", "/api/tokens/", "/api/usage/", "/api/channels/"])
def test_no_credentials_is_401(api, path):
    # when
    response = api().get(path)
    # then
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert _error(response)["code"] == "not_authenticated"


@pytest.mark.parametrize("header", ["Bearer op-wrong", "Bearer ", "Basic dXNlcjpwYXNz", "op-no-scheme"])
def test_a_wrong_access_token_is_401(db, api, header):
    # given
    client = api()
    client.credentials(HTTP_AUTHORIZATION=header)
    # when
    response = client.get("/api/me/")
    # then
    assert response.status_code == 401
    assert _error(response)["code"] == "authentication_failed"


def test_a_relay_key_is_refused_on_the_management_api(make_user, api):
    # given: a perfectly valid relay key of an operator
    user, _ = make_user("boss", role="operator")
    _, key = services.create_token(user=user, name="relay")
    # when
    response = api(key).get("/api/me/")
    # then
    assert response.status_code == 401
    assert "sk-" in _error(response)["message"]


def test_a_disabled_user_is_401(make_user, api):
    # given
    user, access = make_user("bob")
    user.is_active = False
    user.save()
    # when
    response = api(access).get("/api/me/")
    # then
    assert response.status_code == 401


@pytest.mark.parametrize("path", ["/api/users/", "/api/tokens/", "/api/channels/"])
def test_malformed_json_is_400(operator, api, path):
    # when
    response = api(operator[1]).post(path, data='{"name": ', content_type="application/json")
    # then
    assert response.status_code == 400
    error = _error(response)
    assert error["code"] == "parse_error"
    assert "JSON" in error["message"]


@pytest.mark.parametrize("body", ["[1, 2]", '"just a string"', "42", "null"])
def test_a_json_body_that_is_not_an_object_is_400(operator, api, body):
    # when
    response = api(operator[1]).post("/api/tokens/", data=body, content_type="application/json")
    # then
    assert response.status_code == 400
    _error(response)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_a_non_json_body_is_415(operator, api, content_type):
    # when
    response = api(operator[1]).post("/api/tokens/", data="name=x", content_type=content_type)
    # then
    assert response.status_code == 415
    assert _error(response)["code"] == "unsupported_media_type"


def test_a_malformed_patch_body_is_400(make_user, api):
    # given
    bob, access = make_user("bob")
    token, _ = services.create_token(user=bob, name="t")
    # when
    response = api(access).patch(f"/api/tokens/{token.pk}/", data="{not json", content_type="application/json")
    # then
    assert response.status_code == 400
    assert _error(response)["code"] == "parse_error"


@pytest.mark.parametrize(
    "path",
    ["/api/users/424242/", "/api/users/abc/", "/api/tokens/424242/", "/api/channels/424242/", "/api/channels/x/"],
)
def test_an_unknown_id_is_404(operator, api, path):
    # when
    response = api(operator[1]).get(path)
    # then
    assert response.status_code == 404
    assert _error(response)["code"] == "not_found"


def test_a_method_the_route_lacks_is_405(operator, api):
    # when
    response = api(operator[1]).put(f"/api/users/{operator[0].pk}/", {"role": "member"}, format="json")
    # then
    assert response.status_code == 405
    assert _error(response)["code"] == "method_not_allowed"


def test_routes_answer_without_the_trailing_slash(operator, api):
    # when: a POST must not be redirected (the redirect would drop its body)
    response = api(operator[1]).post("/api/tokens", {"name": "no-slash"}, format="json")
    # then
    assert response.status_code == 201
    assert api(operator[1]).get("/api/me").status_code == 200
