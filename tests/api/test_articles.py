from __future__ import annotations

from search.models import Article


def test_an_admin_creates_an_article_that_is_sanitised_and_queued_for_indexing(
    admin_api, teams, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        response = admin_api.post(
            "/api/articles/",
            {
                "title": "Refunds",
                "body": "Ask **within** 30 days.<script>alert(1)</script>",
                "team": "billing",
                "external_id": "kb-1",
            },
        )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert "<strong>within</strong>" in body["body_html"] and "<script" not in body["body_html"]
    assert body["team_detail"]["slug"] == "billing"
    assert (body["index_state"], body["searchable"]) == ("pending", False)
    assert len(callbacks) == 1  # the index task, sent once the article is committed


def test_posting_a_known_external_id_updates_that_article(admin_api):
    first = admin_api.post("/api/articles/", {"title": "Refunds", "body": "Old text.", "external_id": "kb-1"})
    again = admin_api.post("/api/articles/", {"title": "Refunds", "body": "New text.", "external_id": "kb-1"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert Article.objects.get().body == "New text."


def test_an_admin_changes_part_of_an_article_and_replaces_all_of_it(admin_api):
    article = admin_api.post("/api/articles/", {"title": "Refunds", "body": "Text."}).json()
    patched = admin_api.patch(f"/api/articles/{article['id']}/", {"published": False})
    assert patched.status_code == 200, patched.json()
    assert (patched.json()["published"], patched.json()["title"]) == (False, "Refunds")
    replaced = admin_api.put(
        f"/api/articles/{article['id']}/", {"title": "Returns", "body": "Other.", "body_format": "text"}
    )
    assert replaced.status_code == 200, replaced.json()
    assert Article.objects.get().title == "Returns"


def test_an_admin_deletes_an_article(admin_api):
    article = Article.objects.create(title="Old", body="Gone soon.")
    assert admin_api.delete(f"/api/articles/{article.pk}/").status_code == 204
    assert not Article.objects.exists()
    assert admin_api.delete(f"/api/articles/{article.pk}/").status_code == 404


def test_agents_read_articles(agent_api):
    article = Article.objects.create(title="Card payments", body="Cards are charged at checkout.")
    listed = agent_api.get("/api/articles/").json()
    assert [a["id"] for a in listed["results"]] == [article.pk]
    assert agent_api.get(f"/api/articles/{article.pk}/").json()["title"] == "Card payments"


def test_bad_articles_are_refused_field_by_field_and_not_stored(admin_api, teams):
    cases = [
        ({"body": "No title."}, "title"),
        ({"title": "T", "body": "<script>only()</script>", "body_format": "html"}, "body"),
        ({"title": "T", "body": "B", "team": "nope"}, "team"),
        ({"title": "T", "body": "B", "published": "yes"}, "published"),
        ({"title": 5, "body": "B"}, "title"),
        ({"title": "T", "body": "B", "url": "ftp://example.com/x"}, "url"),
        ({"title": "T", "body": "B", "body_format": "docx"}, "body_format"),
        ({"title": "T" * 301, "body": "B"}, "title"),
    ]
    for data, field in cases:
        response = admin_api.post("/api/articles/", data)
        assert response.status_code == 400, (data, response.json())
        assert field in response.json(), (data, response.json())
    assert not Article.objects.exists()
