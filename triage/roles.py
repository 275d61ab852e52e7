"""Roles are Django groups: ``agents`` work tickets, ``admins`` also tune routing and models.

Views use the decorators and mixins here so that a role check is written once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.contrib.auth.mixins import AccessMixin
from django.core.exceptions import PermissionDenied

AGENTS = "agents"
ADMINS = "admins"
INTEGRATIONS = "integrations"


def group_names(user: Any) -> frozenset[str]:
    """The names of the user's groups, read with one query and kept on this user object.

    Every role check of a request reads them (an API request asks up to four questions), and the
    request's user object lives as long as the request; code that changes a user's groups and asks
    again should ask about a fresh object (``User.objects.get``).
    """
    cached = getattr(user, "_triage_group_names", None)
    if cached is None:
        cached = frozenset(user.groups.values_list("name", flat=True)) if user.is_authenticated else frozenset()
        user._triage_group_names = cached
    return cached


def remember_group_names(user: Any, names: Iterable[str]) -> None:
    """Keep group names already read with the user (e.g. in the query that authenticated it) on it, so
    that ``group_names`` does not query them again."""
    user._triage_group_names = frozenset(names)


def is_admin(user: Any) -> bool:
    return bool(user.is_authenticated and (user.is_superuser or ADMINS in group_names(user)))


def is_agent(user: Any) -> bool:
    """Admins can do everything agents can."""
    return bool(user.is_authenticated and (is_admin(user) or AGENTS in group_names(user)))


def _role_required(check: Callable[[Any], bool]) -> Callable:
    def decorator(view: Callable) -> Callable:
        @login_required
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not check(request.user):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


agent_required = _role_required(is_agent)
admin_required = _role_required(is_admin)


class AgentRequiredMixin(AccessMixin):
    def dispatch(self, request, *args, **kwargs):
        if not request.user.is_authenticated:
            return self.handle_no_permission()
        if not is_agent(request.user):
            raise PermissionDenied
        return super().dispatch(request, *args, **kwargs)


class AdminRequiredMixin(AccessMixin):
    def dispatch(self, request, *args, **kwargs):
        if not request.user.is_authenticated:
            return self.handle_no_permission()
        if not is_admin(request.user):
            raise PermissionDenied
        return super().dispatch(request, *args, **kwargs)
