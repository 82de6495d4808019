"""The management API under /api/."""

from django.http import JsonResponse
from django.urls import include, path, re_path


def not_found(request, rest: str = ""):
    return JsonResponse(
        {
            "error": {
                "message": f"Unknown API path: {request.path}",
                "type": "invalid_request_error",
                "code": "not_found",
            }
        },
        status=404,
    )


urlpatterns = [
    path("", include("billing.api_urls")),
    path("", include("channels_app.api_urls")),
    re_path(r"^(?P<rest>.*)$", not_found),
]
