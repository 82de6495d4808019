"""Management API auth: ``Authorization: Bearer <access token>``; relay keys refused."""

from __future__ import annotations

from rest_framework import authentication, exceptions

from billing.models import User
from relay.relay_keys import KEY_PREFIX, hash_key


class AccessTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise exceptions.AuthenticationFailed("Authorization must be 'Bearer <access token>'.")
        if token.startswith(KEY_PREFIX):
            raise exceptions.AuthenticationFailed(
                "Relay keys (sk-…) are not accepted here; use a management access token."
            )
        try:
            user = User.objects.select_related("team", "group").get(access_token_hash=hash_key(token))
        except User.DoesNotExist:
            raise exceptions.AuthenticationFailed("Invalid access token.") from None
        if not user.is_active:
            raise exceptions.AuthenticationFailed("User is disabled.")
        return user, None

    def authenticate_header(self, request) -> str:
        return self.keyword
