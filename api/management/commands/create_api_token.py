from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError
from django.db import IntegrityError

from api.models import ApiToken
from config.commands import DatabaseCommand


class Command(DatabaseCommand):
    help = "Issue an API token for a user and print its secret, which is shown only this once."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--scope", required=True, choices=ApiToken.Scope.values)
        parser.add_argument("--name", required=True, help="what will use the token, e.g. 'email gateway'")

    def handle(self, *args, username: str, scope: str, name: str, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user {username!r}")
        try:
            token, secret = ApiToken.issue(user, name=name, scope=scope)
        except IntegrityError:
            raise CommandError(f"{username} already has a token named {name!r}") from None
        self.stderr.write(f"Token {token.name!r} ({token.scope}) for {username}; store it now, it is not kept:")
        self.stdout.write(secret)
