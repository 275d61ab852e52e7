"""Verb-named writes for routing settings: a team's mode and threshold, its description and example
tickets, with their audit rows.

The router reads ``Team.mode`` and ``Team.threshold`` from the database for every decision, so a
change committed here applies to the next ticket routed, in every worker, without a restart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from triage.models import Team, TeamChange
from triage.roles import is_admin

REASON_MAX = TeamChange._meta.get_field("reason").max_length
AUDIT_MAX = TeamChange._meta.get_field("after").max_length
DESCRIPTION_MAX = 2000
# A few examples steer the zero-shot router; many would be a training set, which labels are for.
EXAMPLES_MAX = 10
EXAMPLE_MAX = 1000


def _clean_threshold(value: Any) -> float:
    if isinstance(value, bool):
        raise ValidationError({"threshold": "must be a number between 0 and 1"})
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValidationError({"threshold": f"must be a number between 0 and 1, got {value!r}"}) from None
    if math.isnan(number) or not 0.0 <= number <= 1.0:
        raise ValidationError({"threshold": f"must be between 0 and 1, got {value}"})
    return number


def _clean_mode(value: Any) -> str:
    if value not in Team.Mode.values:
        raise ValidationError({"mode": f"must be one of {', '.join(Team.Mode.values)}, got {value!r}"})
    return str(value)


def _clean_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if len(reason) > REASON_MAX:
        raise ValidationError({"reason": f"is {len(reason)} characters long; the limit is {REASON_MAX}"})
    return reason


def _check_user(user: Any) -> None:
    # None is the system (a management command or a migration); a person must be an admin.
    if user is not None and not is_admin(user):
        raise PermissionDenied("only admins change routing settings")


def _apply(team: Team, mode: str | None, threshold: float | None, user: Any, reason: str) -> list[TeamChange]:
    locked = Team.objects.select_for_update().get(pk=team.pk)
    changes: list[TeamChange] = []
    updated: list[str] = []
    if mode is not None and mode != locked.mode:
        changes.append(TeamChange(team=locked, user=user, field="mode", before=locked.mode, after=mode, reason=reason))
        locked.mode = mode
        updated.append("mode")
    if threshold is not None and threshold != locked.threshold:
        changes.append(
            TeamChange(
                team=locked,
                user=user,
                field="threshold",
                before=repr(locked.threshold),
                after=repr(threshold),
                reason=reason,
            )
        )
        locked.threshold = threshold
        updated.append("threshold")
    if updated:
        locked.save(update_fields=[*updated, "updated_at"])
        TeamChange.objects.bulk_create(changes)
    team.mode, team.threshold, team.updated_at = locked.mode, locked.threshold, locked.updated_at
    return changes


def set_team_routing(
    team: Team, *, mode: str | None = None, threshold: float | None = None, user: Any, reason: str = ""
) -> list[TeamChange]:
    """Change ``team``'s routing mode and/or threshold and audit each changed field.

    Validates first (mode one of auto/suggest/off, threshold a number in [0, 1], reason short
    enough) and raises ``ValidationError`` with nothing saved; ``PermissionDenied`` when ``user``
    is a person who is not an admin. A value equal to the current one is not a change and writes
    no audit row. Returns the ``TeamChange`` rows written (``before`` and ``after`` as text).

    >>> set_team_routing(billing, threshold=0.85, user=ada, reason="fewer wrong routes")  # doctest: +SKIP
    [<TeamChange: ...>]
    """
    _check_user(user)
    cleaned_mode = _clean_mode(mode) if mode is not None else None
    cleaned_threshold = _clean_threshold(threshold) if threshold is not None else None
    cleaned_reason = _clean_reason(reason)
    with transaction.atomic():
        return _apply(team, cleaned_mode, cleaned_threshold, user, cleaned_reason)


def set_routing_for_teams(
    settings_by_team: Mapping[Team, Mapping[str, Any]], *, user: Any, reason: str = ""
) -> list[TeamChange]:
    """Apply several teams' settings (``{team: {"mode": ..., "threshold": ...}}``) all or none.

    Every value is validated before anything is written; a ``ValidationError`` names the team.
    """
    _check_user(user)
    cleaned_reason = _clean_reason(reason)
    cleaned: list[tuple[Team, str | None, float | None]] = []
    errors: dict[str, list[str]] = {}
    for team, values in settings_by_team.items():
        try:
            mode = _clean_mode(values["mode"]) if values.get("mode") is not None else None
            threshold = _clean_threshold(values["threshold"]) if values.get("threshold") is not None else None
        except ValidationError as exc:
            errors[team.slug] = [f"{field} {msg}" for field, msgs in exc.message_dict.items() for msg in msgs]
            continue
        cleaned.append((team, mode, threshold))
    if errors:
        raise ValidationError(errors)
    changes: list[TeamChange] = []
    with transaction.atomic():
        for team, mode, threshold in sorted(cleaned, key=lambda item: item[0].pk):  # lock order: no deadlocks
            changes.extend(_apply(team, mode, threshold, user, cleaned_reason))
    return changes


# --- Description and example tickets ------------------------------------------------------------------
def clean_description(value: Any) -> str:
    if not isinstance(value, str):
        raise ValidationError({"description": "must be text"})
    value = value.strip()
    if len(value) > DESCRIPTION_MAX:
        raise ValidationError({"description": f"is {len(value)} characters long; the limit is {DESCRIPTION_MAX}"})
    return value


def clean_examples(value: Any) -> list[str]:
    if not isinstance(value, list | tuple) or not all(isinstance(e, str) for e in value):
        raise ValidationError({"examples": "must be a list of texts"})
    examples = list(dict.fromkeys(e.strip() for e in value if e.strip()))
    if len(examples) > EXAMPLES_MAX:
        raise ValidationError({"examples": f"are {len(examples)}; at most {EXAMPLES_MAX} (labels teach the rest)"})
    long = [i + 1 for i, e in enumerate(examples) if len(e) > EXAMPLE_MAX]
    if long:
        raise ValidationError({"examples": f"number {long[0]} is longer than {EXAMPLE_MAX} characters"})
    return examples


def _audit_text(value: str) -> str:
    return value if len(value) <= AUDIT_MAX else value[: AUDIT_MAX - 1] + "…"


def describe_team(
    team: Team, *, description: Any, examples: Any = None, user: Any, reason: str = ""
) -> list[TeamChange]:
    """Change what the router reads of ``team``: its description and (``examples`` not None) example tickets.

    Validates everything first (``ValidationError``, nothing saved); ``PermissionDenied`` for a
    person who is not an admin. Each changed field writes a ``TeamChange`` (texts cut to the audit
    column's length; examples one per line). A change makes the zero-shot router another model: on
    commit, ``start_zero_shot_version_task`` creates and promotes that version on an inference
    worker (``mlops.registry.ensure_zero_shot_version``), so the next ticket is routed with it.

    >>> describe_team(billing, description="Invoices, refunds and failed card payments.", user=ada)  # doctest: +SKIP
    [<TeamChange: ...>]
    """
    _check_user(user)
    cleaned_description = clean_description(description)
    cleaned_examples = clean_examples(examples) if examples is not None else None
    cleaned_reason = _clean_reason(reason)
    with transaction.atomic():
        locked = Team.objects.select_for_update().get(pk=team.pk)
        updates: dict[str, tuple[str, str, Any]] = {}  # field -> (before, after) as audit text, new value
        if cleaned_description != locked.description:
            updates["description"] = (locked.description, cleaned_description, cleaned_description)
        if cleaned_examples is not None and cleaned_examples != list(locked.examples or []):
            updates["examples"] = ("\n".join(locked.examples or []), "\n".join(cleaned_examples), cleaned_examples)
        changes = [
            TeamChange(
                team=locked,
                user=user,
                field=field,
                before=_audit_text(old),
                after=_audit_text(new),
                reason=cleaned_reason,
            )
            for field, (old, new, _) in updates.items()
        ]
        for field, (_, _, value) in updates.items():
            setattr(locked, field, value)
        if changes:
            locked.save(update_fields=["description", "examples", "updated_at"])
            TeamChange.objects.bulk_create(changes)
            transaction.on_commit(_start_zero_shot_version)
    team.description, team.examples, team.updated_at = locked.description, locked.examples, locked.updated_at
    return changes


def _start_zero_shot_version() -> None:
    from config.celery import send_or_defer

    from .tasks import start_zero_shot_version_task

    # With the broker down nothing is lost: routing creates the version on its next ticket.
    send_or_defer(start_zero_shot_version_task)
