from __future__ import annotations

from django.urls import path

from . import views

app_name = "search"
urlpatterns = [
    path("deflect/", views.deflect, name="deflect"),
    path("articles/<int:pk>/", views.article_found, name="article_found"),
    path("articles/<int:pk>/marks/<int:mark_pk>/retract/", views.retract_article_mark, name="retract_article_mark"),
]
