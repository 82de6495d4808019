"""Service mode: every balance change outside the relay's own charging moves
the user's Redis balance mirror too, once the transaction commits."""

from __future__ import annotations

import pytest

from billing import services
from billing.mirror import names

pytestmark = [pytest.mark.service, pytest.mark.django_db]


def test_topup_adjust_and_redeem_move_an_existing_mirror(
    make_user, operator, redis_client, django_capture_on_commit_callbacks
):
    # given: the relay has seeded bob's mirror and holds 300 µUSD of it
    bob, _ = make_user("bob")
    redis_client.set(names().balance(bob.pk), 1_000_000 - 300)
    with django_capture_on_commit_callbacks(execute=True):
        services.topup(bob, 1_000_000)
    redis_client.set(names().balance(bob.pk), 1_000_000 - 300)
    (code,) = services.create_redemption_codes(name="g", count=1, amount=2_000_000)
    # when
    with django_capture_on_commit_callbacks(execute=True):
        services.topup(bob, 5_000_000)
    after_topup = int(redis_client.get(names().balance(bob.pk)))
    with django_capture_on_commit_callbacks(execute=True):
        services.adjust(bob, -400_000, actor=operator[0], note="fee")
    after_adjust = int(redis_client.get(names().balance(bob.pk)))
    with django_capture_on_commit_callbacks(execute=True):
        services.redeem(bob, code.code)
    # then
    assert after_topup == 5_999_700
    assert after_adjust == 5_599_700
    assert int(redis_client.get(names().balance(bob.pk))) == 7_599_700
    bob.refresh_from_db()
    assert bob.balance == 7_600_000  # the mirror is that minus the 300 held


def test_a_missing_mirror_is_left_for_the_relay_to_seed(make_user, redis_client, django_capture_on_commit_callbacks):
    # given
    bob, _ = make_user("bob")
    # when
    with django_capture_on_commit_callbacks(execute=True):
        services.topup(bob, 1_000_000)
    # then
    assert redis_client.get(names().balance(bob.pk)) is None


def test_a_rolled_back_topup_does_not_move_the_mirror(make_user, redis_client, django_capture_on_commit_callbacks):
    # given
    from django.db import transaction

    bob, _ = make_user("bob")
    redis_client.set(names().balance(bob.pk), 0)
    # when
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        try:
            with transaction.atomic():
                services.topup(bob, 1_000_000)
                raise RuntimeError("the caller's transaction fails")
        except RuntimeError:
            pass
    # then
    assert callbacks == []
    assert int(redis_client.get(names().balance(bob.pk))) == 0
