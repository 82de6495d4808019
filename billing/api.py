"""Management API for users, tokens, usage and redemption codes.

Operators see everything, team admins their team, members only themselves.
Detail routes answer 404 for objects outside that view, so ids of other
people's things are not confirmed; 403 is for what the caller can see but
may not change.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework import exceptions, generics, mixins, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from billing import history, services
from billing.models import RedemptionCode, Token, UsageLog, User
from billing.money import to_usd
from billing.serializers import (
    AdjustSerializer,
    MeSerializer,
    RedeemSerializer,
    RedemptionBatchSerializer,
    RedemptionCodeSerializer,
    TokenSerializer,
    TopupSerializer,
    UsageLogSerializer,
    UsageSummaryQuerySerializer,
    UserCreateSerializer,
    UserSerializer,
)
from core.api import IsOperator


def visible_users(caller: User) -> QuerySet[User]:
    if caller.is_operator:
        return User.objects.all()
    if caller.is_team_admin and caller.team_id:
        return User.objects.filter(team_id=caller.team_id)
    return User.objects.filter(pk=caller.pk)


def visible_tokens(caller: User) -> QuerySet[Token]:
    tokens = Token.objects.live()
    if caller.is_operator:
        return tokens
    if caller.is_team_admin and caller.team_id:
        return tokens.filter(user__team_id=caller.team_id)
    return tokens.filter(user=caller)


def can_manage(caller: User, target: User) -> bool:
    """May the caller issue tokens and access tokens for target? A team admin
    only for their team's members: other admins and operators in the same
    team have balances and powers of their own."""
    if caller.is_operator or caller.pk == target.pk:
        return True
    return (
        caller.is_team_admin
        and caller.team_id is not None
        and target.team_id == caller.team_id
        and target.role == User.Role.MEMBER
    )


def _require(allowed: bool, message: str) -> None:
    if not allowed:
        raise exceptions.PermissionDenied(message)


# The largest integer a database column holds (bigint).
MAX_INT = 2**63 - 1


def _int_param(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return None
    try:
        value = int(raw)
    except ValueError:
        raise exceptions.ValidationError({name: [f"Expected an integer id, got {raw!r}."]}) from None
    if not -MAX_INT <= value <= MAX_INT:
        raise exceptions.ValidationError({name: [f"{name} is out of range."]})
    return value


def _datetime_param(request: Request, name: str) -> datetime | None:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return None
    # An unencoded "+00:00" arrives as " 00:00"; put the plus back before giving up.
    candidates = [raw]
    if " " in raw:
        head, _, tail = raw.rpartition(" ")
        candidates.append(f"{head}+{tail}")
    for candidate in candidates:
        try:
            value = parse_datetime(candidate)
        except ValueError:
            value = None
        if value is not None:
            return value if timezone.is_aware(value) else timezone.make_aware(value, UTC)
    raise exceptions.ValidationError(
        {name: [f"Expected an ISO 8601 datetime such as 2025-01-31T00:00:00Z, got {raw!r}."]}
    )


class UserViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = UserSerializer
    http_method_names = ["get", "post", "patch", "head", "options"]

    def get_queryset(self) -> QuerySet[User]:
        return visible_users(self.request.user).select_related("group", "team").order_by("id")

    def create(self, request: Request) -> Response:
        caller: User = request.user
        _require(caller.is_operator or caller.is_team_admin, "Members cannot create users.")
        serializer = UserCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if not caller.is_operator:
            # Team admins add members to their own team, on their own pricing.
            _require(caller.team_id is not None, "Team admins without a team cannot create users.")
            _require(data.get("role", User.Role.MEMBER) == User.Role.MEMBER, "Team admins may only create members.")
            _require(data.get("team", caller.team) == caller.team, "Team admins may only create users in their team.")
            _require(data.get("group", caller.group) == caller.group, "Team admins may only use their own group.")
            data = {**data, "team": caller.team, "group": caller.group}
        user, access_token = services.create_user(**data)
        body = {**UserSerializer(user).data, "access_token": access_token}
        return Response(body, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        user = self.get_object()
        caller: User = request.user
        _require(caller.is_operator, "Only operators may change users.")
        serializer = UserSerializer(user, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        if user.pk == caller.pk:
            changes = serializer.validated_data
            # Guard against the one mistake that locks the operator out.
            if changes.get("role", user.role) != User.Role.OPERATOR or not changes.get("is_active", True):
                raise exceptions.ValidationError("Operators cannot demote or deactivate themselves.")
        serializer.save()
        return Response(UserSerializer(user).data)

    @action(detail=True, methods=["post"])
    def topup(self, request: Request, pk: str | None = None) -> Response:
        user = self.get_object()
        _require(request.user.is_operator, "Only operators may top up balances.")
        serializer = TopupSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.topup(
            user, serializer.validated_data["amount_usd"], actor=request.user, note=serializer.validated_data["note"]
        )
        return Response(UserSerializer(user).data)

    @action(detail=True, methods=["post"])
    def adjust(self, request: Request, pk: str | None = None) -> Response:
        user = self.get_object()
        _require(request.user.is_operator, "Only operators may adjust balances.")
        serializer = AdjustSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.adjust(
            user, serializer.validated_data["amount_usd"], actor=request.user, note=serializer.validated_data["note"]
        )
        return Response(UserSerializer(user).data)

    @action(detail=True, methods=["post"], url_path="access_token")
    def access_token(self, request: Request, pk: str | None = None) -> Response:
        user = self.get_object()
        _require(can_manage(request.user, user), "You may not rotate this user's access token.")
        return Response({"access_token": services.issue_access_token(user)})


class MeView(generics.RetrieveAPIView):
    serializer_class = MeSerializer

    def get_object(self) -> User:
        return self.request.user

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "now": timezone.now()}


class TokenViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = TokenSerializer
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[Token]:
        tokens = visible_tokens(self.request.user)
        user_id = _int_param(self.request, "user")
        if user_id is not None:
            tokens = tokens.filter(user_id=user_id)
        return tokens

    def create(self, request: Request) -> Response:
        serializer = TokenSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        owner: User = data.pop("user", request.user)
        _require(can_manage(request.user, owner), "You may only create tokens for yourself or your team's members.")
        token_status = data.pop("status", Token.Status.ACTIVE)
        with transaction.atomic():
            token, key = services.create_token(user=owner, **data)
            if token_status != token.status:
                token.status = token_status
                token.save(update_fields=["status"])
        body = {"id": token.pk, "key": key, **TokenSerializer(token).data}
        return Response(body, status=status.HTTP_201_CREATED)

    def get_object(self) -> Token:
        token = super().get_object()
        if self.request.method not in permissions.SAFE_METHODS:
            # A team admin sees every token in the team but changes only members' and their own.
            _require(can_manage(self.request.user, token.user), "You may not change this token.")
        return token

    def perform_destroy(self, instance: Token) -> None:
        services.delete_token(instance)


def _usage_filters(request: Request) -> dict[str, Any]:
    """The common usage filters of the query string, as column filters."""
    filters: dict[str, Any] = {
        "user_id": _int_param(request, "user"),
        "token_id": _int_param(request, "token"),
        "model": request.query_params.get("model") or None,
    }
    return {k: v for k, v in filters.items() if v is not None}


def viewer_scope(caller: User) -> dict[str, Any]:
    """What of the usage the caller may see, as column filters (the same as
    UsageLog.objects.visible_to): operators all, team admins what was charged
    to their team, members their own."""
    if caller.is_operator:
        return {}
    if caller.is_team_admin and caller.team_id:
        return {"team_id": caller.team_id}
    return {"user_id": caller.pk}


def scoped(filters: dict[str, Any], scope: dict[str, Any]) -> dict[str, Any]:
    """Both sets of filters at once; one that contradicts the scope finds nothing."""
    if any(key in filters and filters[key] != value for key, value in scope.items()):
        return {"pk__in": []}
    return {**filters, **scope}


def _usage_rows(request: Request) -> QuerySet[UsageLog]:
    """The caller's view of usage with the common filters applied."""
    rows = UsageLog.objects.visible_to(request.user).filter(**_usage_filters(request))
    # Half-open [since, until): consecutive windows never count a row twice.
    since, until = _datetime_param(request, "since"), _datetime_param(request, "until")
    if since is not None:
        rows = rows.filter(created_at__gte=since)
    if until is not None:
        rows = rows.filter(created_at__lt=until)
    return rows


class UsageListView(generics.ListAPIView):
    serializer_class = UsageLogSerializer

    def get_queryset(self) -> QuerySet[UsageLog]:
        return _usage_rows(self.request)


def _summary_row(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "key": row["key"],
        "name": row["name"],
        "requests": row["requests"],
        "prompt_tokens": row["prompt_tokens"],
        "completion_tokens": row["completion_tokens"],
        "cached_tokens": row["cached_tokens"],
        "cost_usd": to_usd(row["cost"]),
    }


class UsageSummaryView(generics.GenericAPIView):
    """Totals per user, team, token, model or channel over [since, until), with
    the same filters and role scoping as /api/usage/. Not paginated: one row
    per group. Read from the rollups (billing/history.py): ``since`` and
    ``until`` in the answer are the window read, which differs from the
    query's only where a bound inside an hour is older than the retention
    (rounded down to its hour)."""

    def get(self, request: Request) -> Response:
        query = UsageSummaryQuerySerializer(data={"group_by": request.query_params.get("group_by", "")})
        query.is_valid(raise_exception=True)
        group_by = query.validated_data["group_by"]
        found = history.summary(
            group_by,
            since=_datetime_param(request, "since"),
            until=_datetime_param(request, "until"),
            filters=scoped(_usage_filters(request), viewer_scope(request.user)),
        )
        results = [_summary_row(row) for row in found.results]
        total = _summary_row({"key": None, "name": None, **found.total})
        del total["key"], total["name"]
        since, until = (
            None if t is None else serializers.DateTimeField().to_representation(t) for t in (found.since, found.until)
        )
        return Response(
            {
                "group_by": group_by,
                "since": since,
                "until": until,
                "count": len(results),
                "results": results,
                "total": total,
            }
        )


# -- redemption codes -----------------------------------------------------------------


class RedemptionCodeViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Operators create batches of codes and list them; ?name=&status=unused|redeemed|expired."""

    serializer_class = RedemptionCodeSerializer
    permission_classes = [permissions.IsAuthenticated, IsOperator]

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "now": self.now}

    @property
    def now(self) -> datetime:
        if not hasattr(self, "_now"):
            self._now = timezone.now()
        return self._now

    def get_queryset(self) -> QuerySet[RedemptionCode]:
        codes = RedemptionCode.objects.all()
        name = self.request.query_params.get("name")
        if name:
            codes = codes.filter(name=name)
        state = self.request.query_params.get("status")
        if state == "unused":
            codes = codes.unused(self.now)
        elif state == "redeemed":
            codes = codes.redeemed()
        elif state == "expired":
            codes = codes.expired(self.now)
        elif state:
            raise exceptions.ValidationError({"status": ["Expected unused, redeemed or expired."]})
        return codes

    def create(self, request: Request) -> Response:
        serializer = RedemptionBatchSerializer(data=request.data, context={"now": self.now})
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        codes = services.create_redemption_codes(
            name=data["name"],
            count=data["count"],
            amount=data["amount_usd"],
            expires_at=data["expires_at"],
            created_by=request.user,
        )
        body = {
            "name": data["name"],
            "count": len(codes),
            "amount_usd": to_usd(data["amount_usd"]),
            "expires_at": serializers.DateTimeField().to_representation(data["expires_at"])
            if data["expires_at"]
            else None,
            # The only time the codes appear in the API; the admin exports them as CSV.
            "codes": [{"id": c.pk, "code": c.code} for c in codes],
        }
        return Response(body, status=status.HTTP_201_CREATED)


class RedemptionFailed(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST

    def __init__(self, error: services.RedemptionError) -> None:
        super().__init__(error.message, error.code)
        self.default_code = error.code


class RedeemView(generics.GenericAPIView):
    """Any user redeems a code onto their own balance."""

    def post(self, request: Request) -> Response:
        serializer = RedeemSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            entry = services.redeem(request.user, serializer.validated_data["code"])
        except services.RedemptionError as error:
            raise RedemptionFailed(error) from None
        return Response({"amount_usd": to_usd(entry.amount), "balance_usd": to_usd(entry.balance_after)})
