"""/api/ routes for users, tokens, usage, redemption codes and the caller."""

from django.urls import re_path

from billing import api
from core.api import OptionalSlashRouter

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
