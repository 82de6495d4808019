"""Writes to users, tokens and the ledger: one function per business verb.

Money moves only here, inside ``transaction.atomic()`` with a row lock on the
user, so the balance column always equals the sum of the ledger.
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from billing.models import Group, LedgerEntry, Team, Token, User
from channels_app.services import bump_config_version
from relay.keys import display_prefix, hash_key, new_access_token, new_relay_key


def issue_access_token(user: User) -> str:
    """Give the user a new management access token; returns it (shown once)."""
    token = new_access_token()
    user.access_token_hash = hash_key(token)
    user.access_token_prefix = display_prefix(token)
    user.save(update_fields=["access_token_hash", "access_token_prefix"])
    return token


def set_access_token(user: User, token: str) -> None:
    user.access_token_hash = hash_key(token)
    user.access_token_prefix = display_prefix(token)
    user.save(update_fields=["access_token_hash", "access_token_prefix"])


@transaction.atomic
def create_user(
    *,
    username: str,
    password: str | None = None,
    group: Group | None = None,
    team: Team | None = None,
    role: str = User.Role.MEMBER,
    email: str = "",
) -> tuple[User, str]:
    """Create a user and their management access token; returns both."""
    user = User(username=username, role=role, team=team, email=email)
    if group is not None:
        user.group = group
    if password:
        user.set_password(password)
    else:
        user.set_unusable_password()
    user.save()
    return user, issue_access_token(user)


def record_entry(
    user: User,
    kind: str,
    amount: int,
    *,
    actor: User | None = None,
    note: str = "",
    usage_id: int | None = None,
) -> LedgerEntry:
    """Append one ledger entry and move the balance with it. Call inside a
    transaction that holds the user's row lock."""
    user.balance += amount
    User.objects.filter(pk=user.pk).update(balance=user.balance)
    return LedgerEntry.objects.create(
        user=user,
        kind=kind,
        amount=amount,
        balance_after=user.balance,
        actor=actor,
        note=note[:255],
        usage_id=usage_id,
    )


@transaction.atomic
def topup(user: User, amount: int, *, actor: User | None = None, note: str = "") -> LedgerEntry:
    if amount <= 0:
        raise ValueError("a top-up must be positive")
    locked = User.objects.select_for_update().get(pk=user.pk)
    entry = record_entry(locked, LedgerEntry.Kind.TOPUP, amount, actor=actor, note=note)
    user.balance = locked.balance
    # The relay keeps its own view of balances; tell it this one moved.
    transaction.on_commit(bump_config_version)
    return entry


def create_token(
    *,
    user: User,
    name: str,
    quota: int | None = None,
    expires_at: datetime | None = None,
    models: list[str] | None = None,
    subnets: list[str] | None = None,
    **limits: int | None,
) -> tuple[Token, str]:
    """Create a relay token; returns it with its key, which is never shown again."""
    key = new_relay_key()
    token = Token.objects.create(
        user=user,
        name=name,
        key_hash=hash_key(key),
        key_prefix=display_prefix(key),
        quota=quota,
        expires_at=expires_at,
        models=models or [],
        subnets=subnets or [],
        **limits,
    )
    return token, key


def delete_token(token: Token) -> None:
    """A used token is disabled and hidden so usage history keeps pointing at it."""
    if token.usage.exists():
        token.status = Token.Status.DISABLED
        token.deleted_at = timezone.now()
        token.save(update_fields=["status", "deleted_at"])
    else:
        token.delete()
