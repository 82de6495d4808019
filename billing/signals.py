"""Changes to tokens, users, groups, teams and prices bump the config version.

Balance changes from settled usage are written with ``QuerySet.update`` and
send no signal: the relay already accounted for them itself.
"""

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from billing.models import Group, ModelPrice, Team, Token, User
from core.services import bump_config_version


@receiver([post_save, post_delete], sender=Token)
@receiver([post_save, post_delete], sender=User)
@receiver([post_save, post_delete], sender=Group)
@receiver([post_save, post_delete], sender=Team)
@receiver([post_save, post_delete], sender=ModelPrice)
def _config_changed(**kwargs) -> None:
    transaction.on_commit(bump_config_version)
