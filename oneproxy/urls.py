"""Django's URLs: admin, management API, health. /v1/* never reaches Django
(see oneproxy/asgi.py)."""

from django.contrib import admin
from django.urls import include, path

from oneproxy import dashboard, health

urlpatterns = [
    path("admin/dashboard/", admin.site.admin_view(dashboard.view), name="admin_dashboard"),
    path("admin/", admin.site.urls),
    path("api/", include("oneproxy.api_urls")),
    path("healthz", health.healthz),
    path("readyz", health.readyz),
]


handler400 = "oneproxy.api_errors.bad_request"
handler403 = "oneproxy.api_errors.forbidden"
handler404 = "oneproxy.api_errors.not_found"


def handler500(request):
    """JSON for the API, never a traceback; the admin keeps Django's page."""
    from django.http import JsonResponse
    from django.views.defaults import server_error

    if request.path.startswith("/api/"):
        body = {"error": {"message": "Internal server error.", "type": "server_error", "code": "internal_error"}}
        return JsonResponse(body, status=500)
    return server_error(request)
