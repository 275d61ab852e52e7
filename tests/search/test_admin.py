from __future__ import annotations

import pytest

from search.models import Article, Passage


@pytest.fixture
def admin_client_ada(admin_ada, client):
    """Ada, an admin, logged in to the Django admin (staff and superuser there)."""
    admin_ada.is_staff = admin_ada.is_superuser = True
    admin_ada.save(update_fields=["is_staff", "is_superuser"])
    client.force_login(admin_ada)
    return client


def test_an_admin_creates_an_article_that_is_sanitised_and_queued_for_indexing(admin_client_ada, teams):
    response = admin_client_ada.post(
        "/django-admin/search/article/add/",
        {
            "title": "Refunds",
            "external_id": "kb-9",
            "url": "",
            "body_format": "html",
            "body": "<p onclick='x()'>Ask within 14 days.</p><script>evil()</script>",
            "team": teams["billing"].pk,
            "published": "on",
            "passages-TOTAL_FORMS": "0",
            "passages-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    article = Article.objects.get(external_id="kb-9")
    assert article.body_html == "<p>Ask within 14 days.</p>"
    assert article.index_state == Article.IndexState.PENDING and article.team == teams["billing"]


def test_the_admin_shows_field_errors_from_the_service(admin_client_ada, db):
    response = admin_client_ada.post(
        "/django-admin/search/article/add/",
        {
            "title": "Script only",
            "body_format": "html",
            "body": "<script>evil()</script>",
            "published": "on",
            "passages-TOTAL_FORMS": "0",
            "passages-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 200
    assert "no readable text" in response.content.decode()
    assert not Article.objects.exists()


def test_deleting_in_the_admin_removes_the_passages(admin_client_ada, kb):
    article = kb["kb-refund"]
    response = admin_client_ada.post(f"/django-admin/search/article/{article.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Passage.objects.filter(article_id=article.pk).exists()
    assert admin_client_ada.get("/django-admin/search/article/").status_code == 200
