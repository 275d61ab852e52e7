"""Forms of the tuning page and the reports: they parse and bound what admins type; writes go
through ``triage.team_services``."""

from __future__ import annotations

import math

from django import forms

from learning.reports import DEFAULT_WINDOW, MAX_WINDOW, WINDOW_CHOICES
from mlops.calibration import MIN_THRESHOLD_SUPPORT
from mlops.models import ModelVersion
from tags.models import Tag
from triage.models import Team, TeamChange


def _window_label(n: int) -> str:
    return "all tickets" if n == 0 else f"last {n} tickets"


class UnitIntervalField(forms.FloatField):
    """A float in [0, 1] with messages that say so (NaN and infinities are refused too)."""

    def __init__(self, *, what: str = "Threshold", **kwargs):
        self.what = what
        kwargs.setdefault("min_value", 0.0)
        kwargs.setdefault("max_value", 1.0)
        super().__init__(**kwargs)
        self.error_messages.update(
            {
                "invalid": f"{what} must be a number between 0 and 1.",
                "min_value": f"{what} must be between 0 and 1; %(limit_value)s is the lowest allowed.",
                "max_value": f"{what} must be between 0 and 1; %(limit_value)s is the highest allowed.",
            }
        )

    def to_python(self, value):
        value = super().to_python(value)
        if value is not None and (math.isnan(value) or math.isinf(value)):
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        return value


class WindowForm(forms.Form):
    """Which predictions the page measures on: the last N tickets, optionally one model version."""

    n = forms.IntegerField(
        label="Window",
        min_value=0,
        max_value=MAX_WINDOW,
        initial=DEFAULT_WINDOW,
        required=False,
        help_text="The last N tickets with a prediction; 0 for all.",
        widget=forms.Select(choices=[(n, _window_label(n)) for n in WINDOW_CHOICES]),
    )
    version = forms.ModelChoiceField(
        label="Model version",
        queryset=ModelVersion.objects.all(),
        required=False,
        empty_label="latest prediction of each ticket",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        raw = self.data.get("n") if self.is_bound else None
        if raw not in (None, "") and str(raw).isdigit() and int(raw) not in WINDOW_CHOICES:
            # A window typed into the URL is offered in the menu too, so the page shows what it measures.
            self.fields["n"].widget.choices = sorted(
                [*self.fields["n"].widget.choices, (int(raw), _window_label(int(raw)))], key=lambda c: (c[0] == 0, c[0])
            )

    def clean_n(self) -> int:
        n = self.cleaned_data.get("n")
        return DEFAULT_WINDOW if n is None else n

    @classmethod
    def from_query(cls, query) -> WindowForm:
        data = {"n": query.get("n", DEFAULT_WINDOW), "version": query.get("version", "")}
        return cls(data)

    def window(self) -> tuple[int, ModelVersion | None]:
        """(N, version) when valid, else the defaults: a bad window never breaks the page."""
        if self.is_valid():
            return self.cleaned_data["n"], self.cleaned_data["version"]
        return DEFAULT_WINDOW, None


class WhatIfForm(WindowForm):
    team = forms.SlugField()
    threshold = UnitIntervalField()
    mode = forms.ChoiceField(choices=Team.Mode.choices, required=False)

    def clean_team(self) -> Team:
        slug = self.cleaned_data["team"]
        team = Team.objects.filter(slug=slug).first()
        if team is None:
            raise forms.ValidationError(f"Unknown team {slug!r}.")
        return team


class TeamRoutingForm(forms.Form):
    mode = forms.ChoiceField(choices=Team.Mode.choices)
    threshold = UnitIntervalField()
    reason = forms.CharField(max_length=TeamChange._meta.get_field("reason").max_length, required=False)


def current_tag(value: object) -> Tag:
    """The tag a form names by id, refused when unknown or archived (an archived tag is not scored)."""
    tag = Tag.objects.select_related("tag_set").filter(pk=value).first() if str(value).isdigit() else None
    if tag is None:
        raise forms.ValidationError(f"Unknown tag {value!r}.")
    if tag.archived:
        raise forms.ValidationError(f"Tag {tag.tag_set.name}: {tag.name} is archived; restore it to tune it.")
    return tag


class TagWhatIfForm(WindowForm):
    tag = forms.CharField()
    threshold = UnitIntervalField()

    def clean_tag(self) -> Tag:
        return current_tag(self.cleaned_data["tag"])


class TagThresholdForm(forms.Form):
    threshold = UnitIntervalField()
    reason = forms.CharField(max_length=TeamChange._meta.get_field("reason").max_length, required=False)


class TargetPrecisionForm(WindowForm):
    target = UnitIntervalField(what="Target precision", initial=0.9)
    min_support = forms.IntegerField(
        label="Minimum labeled tickets",
        min_value=1,
        max_value=100_000,
        initial=MIN_THRESHOLD_SUPPORT,
        required=False,
        help_text="Routed tickets with a label a precision must be measured on to count.",
    )
    team = forms.SlugField(required=False, help_text="Empty: every active team.")

    def clean_target(self) -> float:
        target = self.cleaned_data["target"]
        if target == 0.0:
            raise forms.ValidationError("Target precision must be above 0 (every threshold reaches 0).")
        return target

    def clean_min_support(self) -> int:
        value = self.cleaned_data.get("min_support")
        return MIN_THRESHOLD_SUPPORT if value is None else value

    def clean_team(self) -> Team | None:
        slug = self.cleaned_data.get("team")
        if not slug:
            return None
        team = Team.objects.filter(slug=slug).first()
        if team is None:
            raise forms.ValidationError(f"Unknown team {slug!r}.")
        return team


class ReportForm(forms.Form):
    version = forms.ModelChoiceField(queryset=ModelVersion.objects.all(), required=False, empty_label="all versions")


class DiagnosticsForm(forms.Form):
    """Sample sizes of a diagnostics run (``learning.diagnostics``), bounded so a run stays a minute or so."""

    tickets = forms.IntegerField(min_value=1, max_value=2000, initial=200, label="tickets")
    passages = forms.IntegerField(min_value=1, max_value=5000, initial=500, label="passages")
    pairs = forms.IntegerField(min_value=1, max_value=200, initial=20, label="sanity pairs")
