"""Django's URLs: admin, management API, health. /v1/* never reaches Django
(see oneproxy/asgi.py)."""

from django.contrib import admin
from django.urls import include, path

from oneproxy import health

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("oneproxy.api_urls")),
    path("healthz", health.healthz),
    path("readyz", health.readyz),
]
