"""Any change to what the relay routes on bumps the config version."""

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import Signal, receiver

from channels_app.models import Channel, ChannelKey, DisablePhrase
from channels_app.services import bump_config_version


@receiver([post_save, post_delete], sender=Channel)
@receiver([post_save, post_delete], sender=ChannelKey)
@receiver([post_save, post_delete], sender=DisablePhrase)
def _routing_changed(**kwargs) -> None:  # type: ignore[no-untyped-def]
    transaction.on_commit(bump_config_version)


# Sent after a key's state changed (relay, probe); notifications listen here.
key_transitioned = Signal()


@receiver(key_transitioned)
def _tell_operators(**kwargs) -> None:  # type: ignore[no-untyped-def]
    from channels_app import notify

    notify.on_key_transitioned(**kwargs)
