"""Who a user is to oneproxy; the one source of truth for admin and API access."""

from django.db import models
from django.utils.translation import gettext_lazy as _


class Role(models.TextChoices):
    OPERATOR = "operator", _("Operator")
    TEAM_ADMIN = "team_admin", _("Team admin")
    MEMBER = "member", _("Member")
