"""Django's URLs: admin, management API, health. /v1/* never reaches Django
(see oneproxy/asgi.py)."""

from django.contrib import admin
from django.urls import include, path
from django.utils.translation import gettext_lazy as _

from oneproxy import dashboard, health, i18n

admin.site.site_header = "oneproxy"
admin.site.site_title = _("oneproxy admin")
admin.site.index_title = _("Gateway administration")
admin.site.site_url = None  # no public site to link to

urlpatterns = [
    path("admin/dashboard/", admin.site.admin_view(dashboard.view), name="admin_dashboard"),
    path("admin/language/", admin.site.admin_view(i18n.set_language), name="admin_set_language"),
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
