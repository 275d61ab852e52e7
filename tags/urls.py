from __future__ import annotations

from django.urls import path

from . import views

app_name = "tags"
urlpatterns = [
    path("tickets/<int:pk>/tags/", views.ticket_tags, name="ticket_tags"),
    path("tickets/<int:pk>/tags/<int:tag_pk>/", views.toggle_tag, name="toggle_tag"),
]
