"""``Authorization: Bearer <token>`` (or ``Token <token>``) for API tokens."""

from __future__ import annotations

from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed

from .models import ApiToken, hash_token

KEYWORDS = (b"bearer", b"token")


class ApiTokenAuthentication(BaseAuthentication):
    """Looks a token up by the SHA-256 of its secret; revoked tokens and inactive users are refused."""

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() not in KEYWORDS:
            return None  # not ours: let session authentication try
        if len(parts) != 2:
            raise AuthenticationFailed("Malformed Authorization header; expected 'Bearer <token>'.")
        try:
            secret = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise AuthenticationFailed("Malformed token.") from None
        token = ApiToken.objects.select_related("user").filter(digest=hash_token(secret)).first()
        if token is None or token.revoked or not token.user.is_active:
            raise AuthenticationFailed("Invalid or revoked token.")
        token.touch()
        return token.user, token

    def authenticate_header(self, request) -> str:
        # Makes DRF answer 401 (with this challenge) rather than 403 to a request without credentials.
        return 'Bearer realm="api"'
