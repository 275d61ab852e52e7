"""The SetFit recipe of a run: ``SetFitRecipe`` defaults with ``TRIAGE_SETFIT_RECIPE``'s overrides."""

from __future__ import annotations

import dataclasses
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def make_recipe(overrides: dict[str, Any] | None = None):
    """The ``SetFitRecipe`` with ``overrides`` (default: ``TRIAGE_SETFIT_RECIPE``) applied; unknown fields
    are refused with ``ImproperlyConfigured``."""
    from mlops.inference.setfit_recipe import SetFitRecipe

    overrides = dict(settings.TRIAGE_SETFIT_RECIPE) if overrides is None else overrides
    known = {f.name for f in dataclasses.fields(SetFitRecipe)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ImproperlyConfigured(f"TRIAGE_SETFIT_RECIPE has unknown fields {unknown}; known: {sorted(known)}")
    return dataclasses.replace(SetFitRecipe(), **overrides)
