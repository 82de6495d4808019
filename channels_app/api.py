"""Management API for channels and their key pools (operators only).

Deleted channels and keys that usage history still points at stay in the
database, disabled and hidden: they answer 404 and are left out of lists.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import Count, Q, QuerySet
from rest_framework import generics, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from channels_app import probe, services
from channels_app.models import Channel, ChannelKey
from channels_app.serializers import (
    ChannelKeySerializer,
    ChannelSerializer,
    KeysAddSerializer,
    KeyUpdateSerializer,
)
from core.api import IsOperator

_LIVE_KEY = Q(keys__deleted_at__isnull=True)


def _key_lines(pasted: list[str]) -> list[str]:
    """Every non-blank line, repeats included (services.clean_key_lines folds them)."""
    return [part for entry in pasted for part in entry.splitlines() if part.strip()]


class ChannelViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = ChannelSerializer
    permission_classes = [IsOperator]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[Channel]:
        channels = Channel.objects.live().annotate(
            key_count=Count("keys", filter=_LIVE_KEY),
            healthy_key_count=Count("keys", filter=_LIVE_KEY & Q(keys__state=ChannelKey.State.ACTIVE)),
        )
        # Said again: Django drops Meta.ordering from aggregating (GROUP BY) queries.
        return channels.order_by(*Channel._meta.ordering)

    def create(self, request: Request) -> Response:
        serializer = ChannelSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        channel = services.create_channel(**serializer.validated_data)
        return Response(ChannelSerializer(channel).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = ChannelSerializer(self.get_object(), data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        serializer.save()
        # Fetched again: the key counts are annotations of the queryset.
        return Response(ChannelSerializer(self.get_object()).data)

    def perform_destroy(self, instance: Channel) -> None:
        services.delete_channel(instance)

    @action(detail=True, methods=["post"])
    def test(self, request: Request, pk: str | None = None) -> Response:
        """Probe every live key of the channel now with its test model."""
        channel = self.get_object()
        results = probe.probe_keys(channel_ids=[channel.pk])
        return Response(
            {"channel": channel.pk, "model": channel.effective_test_model, "results": [r.as_dict() for r in results]}
        )


class ChannelKeyViewSet(
    mixins.ListModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """/api/channels/{channel_pk}/keys/[{pk}/]"""

    serializer_class = ChannelKeySerializer
    permission_classes = [IsOperator]

    def get_channel(self) -> Channel:
        return generics.get_object_or_404(Channel.objects.live(), pk=self.kwargs["channel_pk"])

    def get_queryset(self) -> QuerySet[ChannelKey]:
        return self.get_channel().keys.live()

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        channel = self.get_channel()
        serializer = KeysAddSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        pasted = serializer.validated_data["keys"]
        added = services.add_keys(channel, pasted)
        body = {
            "added": len(added),
            # Keys already in the pool, and repeats within this paste.
            "skipped": len(_key_lines(pasted)) - len(added),
            "keys": ChannelKeySerializer(added, many=True).data,
        }
        return Response(body, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        key = self.get_object()
        serializer = KeyUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        changes = dict(serializer.validated_data)
        state = changes.pop("state", None)
        with transaction.atomic():
            if state is not None:
                services.set_key_state(key, state, f"set by {request.user.username}")
            if changes:
                for name, value in changes.items():
                    setattr(key, name, value)
                key.save(update_fields=list(changes))
        # The whole key as it now stands, with what the relay wrote meanwhile.
        key.refresh_from_db()
        return Response(ChannelKeySerializer(key).data)

    def perform_destroy(self, instance: ChannelKey) -> None:
        services.delete_key(instance)
