"""Serializer fields that refuse values of the wrong JSON type instead of coercing them."""

from __future__ import annotations

from django.core.validators import slug_re
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from triage.models import Team

PK_MAX = 2**63 - 1  # bigint: a larger id cannot exist, and Postgres would refuse the lookup


class StrictCharField(serializers.CharField):
    """Text only: DRF's CharField would turn 12 into "12" and True into an error message."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """JSON true/false only: DRF's BooleanField also takes "yes", "0" and 1."""

    default_error_messages = {"invalid": "Must be true or false."}

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer only: DRF's IntegerField also takes "5", 5.0 and true."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictFloatField(serializers.FloatField):
    """A JSON number only: DRF's FloatField also takes "0.5" and true."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        return super().to_internal_value(data)


def find_team(value) -> Team | None:
    """A team by id (an integer, or digits) or by slug; None when there is no such team."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) or (isinstance(value, str) and value.isascii() and value.isdigit()):
        number = int(value)
        found = Team.objects.filter(pk=number).first() if 0 < number <= PK_MAX else None
        if found is not None or isinstance(value, int):
            return found
    # Only text a slug can be reaches the database: a NUL byte or a lone surrogate would make the
    # query itself fail (DataError, UnicodeEncodeError) instead of finding nothing.
    if not isinstance(value, str) or not slug_re.fullmatch(value):
        return None
    return Team.objects.filter(slug=value).first()


@extend_schema_field(
    {
        "oneOf": [
            {"type": "integer", "minimum": 1, "maximum": PK_MAX},
            {"type": "string", "pattern": "^[-a-zA-Z0-9_]+$", "maxLength": 64},
        ],
        "description": "Team id or slug.",
    }
)
class TeamRefField(serializers.Field):
    """Writes take a team id or slug; reads show ``{"id", "slug", "name"}``."""

    default_error_messages = {
        "invalid": "Must be a team id (integer) or slug (text).",
        "unknown": "Unknown team {value!r}.",
    }

    def to_internal_value(self, data) -> Team:
        if isinstance(data, bool) or not isinstance(data, int | str):
            self.fail("invalid")
        team = find_team(data)
        if team is None:
            self.fail("unknown", value=data)
        return team

    def to_representation(self, team: Team) -> dict:
        return {"id": team.pk, "slug": team.slug, "name": team.name}
