"""Which tags notify automations (``ticket.tagged``) is a per-tag flag admins set, audited; the demo and
existing databases keep high urgency and security notifying as before."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import call_command

from tags.dashboard import alerting
from tags.models import Tag, TagChange
from tags.services import create_tag_set, set_tag_notify
from tests.tags.builders import make_tag_sets, tag

pytestmark = pytest.mark.django_db


def test_a_new_tag_does_not_notify_until_an_admin_says_so(admin_ada):
    topics = create_tag_set("Topics", tags=[{"name": "security"}, {"name": "outage", "notify": True}])
    security, outage = topics.tags.get(slug="security"), topics.tags.get(slug="outage")
    assert not alerting(security) and alerting(outage)  # the slug "security" decides nothing
    set_tag_notify(security, True, user=admin_ada, reason="page the on-call")
    assert alerting(Tag.objects.get(pk=security.pk))
    (change,) = TagChange.objects.filter(field="notify")
    assert (change.tag, change.before, change.after, change.user) == (security, "False", "True", admin_ada)
    set_tag_notify(security, True, user=admin_ada)  # nothing changes: no second audit row
    assert TagChange.objects.filter(field="notify").count() == 1


@pytest.mark.parametrize("value", ["yes", 1, None, "false"])
def test_a_notify_that_is_not_true_or_false_is_refused_with_nothing_stored(admin_ada, value):
    make_tag_sets()
    with pytest.raises(ValidationError, match="must be true or false"):
        set_tag_notify(tag("topics/outage"), value, user=admin_ada)
    with pytest.raises(ValidationError, match="must be true or false"):
        create_tag_set("Other", tags=[{"name": "x", "notify": value}])
    assert not tag("topics/outage").notify and not TagChange.objects.filter(field="notify").exists()


def test_an_agent_cannot_switch_notify(agent_alice):
    make_tag_sets()
    with pytest.raises(PermissionDenied):
        set_tag_notify(tag("topics/outage"), True, user=agent_alice)
    assert not tag("topics/outage").notify


def test_the_demo_seed_and_the_migration_keep_high_urgency_and_security_notifying():
    call_command("load_tag_sets", stdout=open("/dev/null", "w"))
    notifying = sorted(f"{t.tag_set.slug}/{t.slug}" for t in Tag.objects.filter(notify=True).select_related("tag_set"))
    assert notifying == ["topics/security", "urgency/high"]
    # A database from before the flag: every tag False, then the migration's data step.
    Tag.objects.update(notify=False)
    from importlib import import_module

    import_module("tags.migrations.0002_tag_notify").notify_as_before(apps, None)
    assert sorted(f"{t.tag_set.slug}/{t.slug}" for t in Tag.objects.filter(notify=True)) == notifying


def test_an_admin_switches_notify_in_the_django_admin_and_it_is_audited(superuser_client, admin_ada):
    make_tag_sets()
    outage = tag("topics/outage")
    page = superuser_client.get(f"/django-admin/tags/tag/{outage.pk}/change/")
    form = page.context["adminform"].form
    data = {k: v for k, v in form.initial.items() if k in form.fields and v is not None}
    data.update({"notify": "on", "threshold": str(outage.threshold)})
    response = superuser_client.post(f"/django-admin/tags/tag/{outage.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert tag("topics/outage").notify
    (change,) = TagChange.objects.filter(field="notify")
    assert (change.user, change.after, change.reason) == (admin_ada, "True", "changed in the Django admin")
    # The list's action switches it off again, audited too.
    response = superuser_client.post(
        "/django-admin/tags/tag/", {"action": "notify_off", "_selected_action": [outage.pk, tag("urgency/high").pk]}
    )
    assert response.status_code == 302
    assert not tag("topics/outage").notify and not tag("urgency/high").notify
    assert TagChange.objects.filter(field="notify").count() == 3
