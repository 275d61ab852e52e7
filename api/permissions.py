"""What a request may do: the user's dashboard roles, narrowed by the scope of the token used.

A session (the browsable API, the docs page) carries the user's roles unchanged.
"""

from __future__ import annotations

from rest_framework.permissions import BasePermission

from triage.roles import INTEGRATIONS, group_names, is_admin, is_agent

from .models import ApiToken

ADMIN = "admin"
AGENT = "agent"
INTAKE = "intake"  # may create tickets

SCOPE_GRANTS = {
    ApiToken.Scope.ADMIN: frozenset({ADMIN, AGENT, INTAKE}),
    ApiToken.Scope.AGENT: frozenset({AGENT, INTAKE}),
    ApiToken.Scope.INTEGRATION: frozenset({INTAKE}),
}


def granted_roles(request) -> frozenset[str]:
    """The roles this request acts with, computed once per request.

    >>> granted_roles(request)  # an admin's agent-scoped token
    frozenset({'agent', 'intake'})
    """
    cached = getattr(request, "_api_roles", None)
    if cached is not None:
        return cached
    user = request.user
    held: set[str] = set()
    if user is not None and user.is_authenticated:
        if is_admin(user):
            held.add(ADMIN)
        if is_agent(user):
            held.add(AGENT)
        if held or INTEGRATIONS in group_names(user):
            held.add(INTAKE)
    token = request.auth if isinstance(request.auth, ApiToken) else None
    roles = frozenset(held & SCOPE_GRANTS[token.scope]) if token is not None else frozenset(held)
    request._api_roles = roles
    return roles


class _HasRole(BasePermission):
    role = ""
    message = ""

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated) and self.role in granted_roles(request)


class CanCreateTickets(_HasRole):
    role = INTAKE
    message = "Creating tickets needs an agent, admin or integration role."


class IsAgent(_HasRole):
    role = AGENT
    message = "This needs the agent role (an agent or admin user, with an agent or admin token)."


class IsAdmin(_HasRole):
    role = ADMIN
    message = "This needs the admin role (an admin user, with an admin token)."
