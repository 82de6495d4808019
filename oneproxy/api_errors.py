"""One JSON error shape for the management API: {"error": {"message", "type", "code"}}."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.db import DataError
from django.http import Http404, JsonResponse
from rest_framework import exceptions
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


def _flatten(detail: Any, prefix: str = "") -> list[str]:
    if isinstance(detail, dict):
        out: list[str] = []
        for key, value in detail.items():
            name = key if key != "non_field_errors" else ""
            out += _flatten(value, f"{prefix}{name}: " if name else prefix)
        return out
    if isinstance(detail, list):
        return [m for item in detail for m in _flatten(item, prefix)]
    return [f"{prefix}{detail}"]


# Past this, an integer from a query string or a URL would overflow a
# database column (SQLite: OverflowError; PostgreSQL: DataError).
MAX_INT = 2**63 - 1


class OutOfRange(exceptions.ValidationError):
    default_code = "invalid_request"


def exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, (Http404, ObjectDoesNotExist)):
        exc = exceptions.NotFound()
    elif isinstance(exc, OverflowError | DataError):
        # A number in the request the database cannot hold: the client's mistake.
        exc = OutOfRange("A number in the request is out of range.")
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    detail = getattr(exc, "detail", None)
    code = getattr(exc, "default_code", "error")
    if isinstance(exc, exceptions.ValidationError):
        code = "invalid_request"
    body = {
        "error": {
            "message": "; ".join(_flatten(detail)) if detail is not None else str(exc),
            "type": "invalid_request_error" if response.status_code < 500 else "server_error",
            "code": code,
        }
    }
    if isinstance(exc, exceptions.ValidationError) and isinstance(detail, dict):
        body["error"]["fields"] = detail
    response.data = body
    return response


class Pagination(LimitOffsetPagination):
    """Lists: ``?limit=`` capped at 1,000, an ``?offset=`` a database can hold."""

    max_limit = 1000

    def get_offset(self, request):
        offset = super().get_offset(request)
        if offset > MAX_INT // 2:
            raise OutOfRange({"offset": ["Out of range."]})
        return offset


def _json_error(status: int, message: str, code: str) -> JsonResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JsonResponse({"error": {"message": message, "type": kind, "code": code}}, status=status)


def bad_request(request, exception):
    """Django's 400 (an oversized or malformed body, a bad Host) outside DRF's
    handling: JSON for the API, Django's page elsewhere."""
    from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
    from django.views.defaults import bad_request as django_bad_request

    if not request.path.startswith("/api/"):
        return django_bad_request(request, exception)
    if isinstance(exception, RequestDataTooBig | TooManyFieldsSent | TooManyFilesSent):
        return _json_error(413, "The request body is too large.", "request_too_large")
    return _json_error(400, "Bad request.", "bad_request")


def not_found(request, exception):
    from django.views.defaults import page_not_found

    if request.path.startswith("/api/"):
        return _json_error(404, f"No such API path: {request.path}", "not_found")
    return page_not_found(request, exception)


def forbidden(request, exception):
    from django.views.defaults import permission_denied

    if request.path.startswith("/api/"):
        return _json_error(403, "Forbidden.", "permission_denied")
    return permission_denied(request, exception)
