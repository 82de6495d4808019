"""What both apps' management APIs share: the operator permission and the router."""

from __future__ import annotations

from typing import Any

from rest_framework import permissions
from rest_framework.request import Request
from rest_framework.routers import SimpleRouter

from core.roles import Role


class IsOperator(permissions.BasePermission):
    message = "Only operators may do this."

    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(request.user and getattr(request.user, "role", None) == Role.OPERATOR)


class OptionalSlashRouter(SimpleRouter):
    """Routes match with or without the trailing slash: APPEND_SLASH would answer
    a slashless POST with a redirect that drops the body."""

    def __init__(self) -> None:
        super().__init__()
        self.trailing_slash = "/?"
