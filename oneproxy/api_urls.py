"""The management API under /api/."""

from django.urls import include, path

urlpatterns = [
    path("", include("billing.api_urls")),
    path("", include("channels_app.api_urls")),
]
