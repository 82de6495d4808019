"""/api/ routes for channels and their key pools."""

from django.urls import re_path

from channels_app import api
from core.api import OptionalSlashRouter

router = OptionalSlashRouter()
router.register("channels", api.ChannelViewSet, basename="channel")

_keys = api.ChannelKeyViewSet
urlpatterns = [
    re_path(
        r"^channels/(?P<channel_pk>[^/.]+)/keys/?$",
        _keys.as_view({"get": "list", "post": "create"}),
        name="channel-key-list",
    ),
    re_path(
        r"^channels/(?P<channel_pk>[^/.]+)/keys/(?P<pk>[^/.]+)/?$",
        _keys.as_view({"patch": "partial_update", "delete": "destroy"}),
        name="channel-key-detail",
    ),
    *router.urls,
]
