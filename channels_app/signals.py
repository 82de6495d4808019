"""Any change to what the relay routes on bumps the config version."""

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from channels_app.models import Channel, ChannelKey
from channels_app.services import bump_config_version


@receiver([post_save, post_delete], sender=Channel)
@receiver([post_save, post_delete], sender=ChannelKey)
def _routing_changed(**kwargs) -> None:  # type: ignore[no-untyped-def]
    transaction.on_commit(bump_config_version)
