"""Any change to what the relay routes on bumps the config version; a key's
new state is announced to whoever listens (operator notifications)."""

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import Signal, receiver

from channels_app.models import Channel, ChannelKey, DisablePhrase
from core.services import bump_config_version


@receiver([post_save, post_delete], sender=Channel)
@receiver([post_save, post_delete], sender=ChannelKey)
@receiver([post_save, post_delete], sender=DisablePhrase)
def _routing_changed(**kwargs) -> None:
    transaction.on_commit(bump_config_version)


# Sent after a key's state changed (relay, probe); notifications listen
# (channels_app/notify.py).
key_transitioned = Signal()
