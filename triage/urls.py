from __future__ import annotations

from django.urls import path

from . import views

app_name = "triage"
urlpatterns = [
    path("", views.queue, name="queue"),
    path("tickets/new/", views.new_ticket, name="new_ticket"),
    path("tickets/<int:pk>/", views.ticket_detail, name="ticket"),
    path("tickets/<int:pk>/decision/", views.ticket_decision, name="ticket_decision"),
    path("tickets/<int:pk>/suggestions/", views.ticket_suggestions, name="ticket_suggestions"),
    path("tickets/<int:pk>/suggestions/refresh/", views.refresh_suggestions, name="refresh_suggestions"),
    path(
        "tickets/<int:pk>/suggestions/<int:suggestion_pk>/feedback/",
        views.article_feedback,
        name="article_feedback",
    ),
    path(
        "tickets/<int:pk>/suggestions/<int:suggestion_pk>/feedback/retract/",
        views.retract_article_feedback,
        name="retract_article_feedback",
    ),
    path("tickets/<int:pk>/history/", views.ticket_history, name="ticket_history"),
    path("tickets/<int:pk>/accept/", views.accept, name="accept"),
    path("tickets/<int:pk>/correct/", views.correct, name="correct"),
    path("tickets/<int:pk>/reassign/", views.reassign, name="reassign"),
    path("tickets/<int:pk>/take/", views.take, name="take"),
    path("tickets/<int:pk>/resolve/", views.resolve, name="resolve"),
    path("tickets/<int:pk>/next/", views.step, {"direction": "next"}, name="next_ticket"),
    path("tickets/<int:pk>/previous/", views.step, {"direction": "previous"}, name="previous_ticket"),
]
