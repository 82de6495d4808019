from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = _("Billing and access")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from billing import signals  # noqa: F401
        from billing.models import Group
        from core import groups

        groups.register(lambda names: set(Group.objects.filter(name__in=names).values_list("name", flat=True)))
