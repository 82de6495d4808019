"""/api/ routes for users, tokens, usage, redemption codes and the caller."""

from django.urls import re_path
from rest_framework.routers import SimpleRouter

from billing import api


class OptionalSlashRouter(SimpleRouter):
    """Routes match with or without the trailing slash: APPEND_SLASH would answer
    a slashless POST with a redirect that drops the body."""

    def __init__(self) -> None:
        super().__init__()
        self.trailing_slash = "/?"


router = OptionalSlashRouter()
router.register("users", api.UserViewSet, basename="user")
router.register("tokens", api.TokenViewSet, basename="token")
router.register("redemptions", api.RedemptionCodeViewSet, basename="redemption")

urlpatterns = [
    re_path(r"^me/?$", api.MeView.as_view(), name="me"),
    re_path(r"^usage/?$", api.UsageListView.as_view(), name="usage-list"),
    re_path(r"^usage/summary/?$", api.UsageSummaryView.as_view(), name="usage-summary"),
    re_path(r"^redeem/?$", api.RedeemView.as_view(), name="redeem"),
    *router.urls,
]
