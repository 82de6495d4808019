"""Admin pieces both apps use: operator-only access, read-only and
soft-delete behaviour, the live/deleted filter, a list-of-strings field.

Access follows the user's role (core/roles.py), never Django's model
permissions.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from django import forms
from django.contrib import admin
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from core.roles import Role


def is_operator(request: HttpRequest) -> bool:
    user = request.user
    return bool(user.is_active and getattr(user, "role", None) == Role.OPERATOR)


class OperatorOnlyAdmin(admin.ModelAdmin):
    """Operators only. A team admin is staff but must never see these pages."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return is_operator(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_operator(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return is_operator(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_operator(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_operator(request)


class ReadOnlyAdminMixin:
    """Rows written only by services (ledger, usage): nobody edits them here."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class LiveFilter(admin.SimpleListFilter):
    """Soft-deleted rows (``deleted_at`` set) are hidden unless asked for."""

    title = _("deleted")
    parameter_name = "deleted"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", _("Deleted only")), ("all", _("All"))]

    def choices(self, changelist: Any) -> Iterable[dict[str, Any]]:
        yield {
            "selected": self.value() is None,
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": _("Not deleted"),
        }
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "all":
            return queryset
        if self.value() == "yes":
            return queryset.filter(deleted_at__isnull=False)
        return queryset.filter(deleted_at__isnull=True)


class SoftDeleteAdminMixin:
    """Channels, keys and tokens: deleting goes through the app's service
    (``soft_delete``), which hides a used row instead of deleting it, so
    usage history keeps pointing at it. The history that protects such a row
    (rows with a PROTECT foreign key to it, or to the rows it cascades to)
    must then not block the delete page, nor count as something the user must
    be allowed to delete."""

    model: type[models.Model]

    @staticmethod
    def soft_delete(obj: Any) -> None:
        raise NotImplementedError

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        self.soft_delete(obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for obj in queryset:
            self.soft_delete(obj)

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        deleted, model_count, perms_needed, _protected = super().get_deleted_objects(objs, request)  # type: ignore[misc]
        return deleted, model_count, perms_needed - _protecting_models(self.model), []


def _protecting_models(model: type[models.Model], seen: set[type[models.Model]] | None = None) -> set[str]:
    """Verbose names of the models whose PROTECT foreign keys keep rows of
    ``model``, or of the models its rows cascade to, from being deleted."""
    seen = seen if seen is not None else set()
    seen.add(model)
    names: set[str] = set()
    for relation in model._meta.related_objects:
        related = relation.related_model
        if relation.on_delete is models.PROTECT:
            names.add(str(related._meta.verbose_name))
        elif relation.on_delete is models.CASCADE and related not in seen:
            names |= _protecting_models(related, seen)
    return names


class StringListField(forms.CharField):
    """A JSON list of strings edited as text, one item per line (commas split too)."""

    def __init__(self, *, item_validator: Callable[[str], None] | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": 3, "cols": 60}))
        self.item_validator = item_validator
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return "\n".join(str(item) for item in value)
        return value

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        if isinstance(value, list | tuple):
            value = "\n".join(str(item) for item in value)
        text = super().to_python(value) or ""
        items: dict[str, None] = {}
        for part in re.split(r"[\n,]", text):
            part = part.strip()
            if part:
                items[part] = None
        return list(items)

    def validate(self, value: Any) -> None:
        super().validate(value)
        if self.item_validator:
            for item in value:
                self.item_validator(item)
