"""Forms of the agent dashboard. They parse and check input; the writes are in services and actions."""

from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model
from django.db.models import Q, QuerySet

from .models import BODY_MAX, SUBJECT_MAX, Team, Ticket
from .roles import ADMINS, AGENTS


def active_teams() -> QuerySet[Team]:
    return Team.objects.filter(active=True).order_by("name")


def assignable_agents() -> QuerySet:
    return (
        get_user_model()
        .objects.filter(is_active=True)
        .filter(Q(groups__name__in=[AGENTS, ADMINS]) | Q(is_superuser=True))
        .distinct()
        .order_by("username")
    )


class AgentChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj) -> str:
        return obj.get_full_name() or obj.username


class NewTicketForm(forms.Form):
    subject = forms.CharField(
        max_length=SUBJECT_MAX,
        required=False,
        help_text="Left empty, the first line of the message stands in for it.",
    )
    body = forms.CharField(label="Message", max_length=BODY_MAX, widget=forms.Textarea(attrs={"rows": 10}))
    requester = forms.EmailField(label="Requester e-mail", required=False, max_length=254)
    channel = forms.ChoiceField(choices=Ticket.Channel.choices, initial=Ticket.Channel.WEB)


class CorrectForm(forms.Form):
    team = forms.ModelChoiceField(
        queryset=Team.objects.none(), to_field_name="slug", empty_label="Choose the right team…"
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = active_teams()


class ReassignForm(forms.Form):
    assignee = AgentChoiceField(queryset=get_user_model().objects.none(), required=False, empty_label="Unassigned")
    team = forms.ModelChoiceField(
        queryset=Team.objects.none(), to_field_name="slug", required=False, empty_label="Keep the team"
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["assignee"].queryset = assignable_agents()
        self.fields["team"].queryset = active_teams()


class ArticleFeedbackForm(forms.Form):
    helpful = forms.TypedChoiceField(choices=[("yes", "Helpful"), ("no", "Not helpful")], coerce=lambda v: v == "yes")
