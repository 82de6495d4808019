"""Who a user is to oneproxy; the one source of truth for admin and API access."""

from django.db import models


class Role(models.TextChoices):
    OPERATOR = "operator"
    TEAM_ADMIN = "team_admin", "Team admin"
    MEMBER = "member"
