"""Wrong passwords are counted per username and address (django-axes, in Postgres): at the limit that pair
is locked out with a 429 page, even for the right password, until the cool-off has passed."""

from __future__ import annotations

from datetime import timedelta

from axes.models import AccessAttempt
from django.conf import settings
from django.test import Client
from django.urls import reverse


def attempt(client: Client, username: str, password: str, path: str | None = None):
    return client.post(path or reverse("login"), {"username": username, "password": password})


def test_thirty_wrong_passwords_lock_the_account_out_from_that_address(agent_alice):
    client = Client()
    codes = [attempt(client, "alice", f"wrong-{i}").status_code for i in range(30)]
    limit = settings.AXES_FAILURE_LIMIT
    assert codes[: limit - 1] == [200] * (limit - 1)  # the login form again, with its error
    assert codes[limit - 1 :] == [429] * (30 - limit + 1)
    locked = attempt(client, "alice", "pw-alice")
    assert locked.status_code == 429
    assert "Too many failed logins" in locked.content.decode()
    assert "_auth_user_id" not in client.session
    assert AccessAttempt.objects.get(username="alice").failures_since_start >= limit


def test_the_lockout_holds_the_username_and_address_pair_only(agent_alice, admin_ada):
    for i in range(settings.AXES_FAILURE_LIMIT):
        attempt(Client(REMOTE_ADDR="10.0.0.1"), "alice", f"wrong-{i}")
    assert attempt(Client(REMOTE_ADDR="10.0.0.1"), "alice", "pw-alice").status_code == 429
    assert attempt(Client(REMOTE_ADDR="10.0.0.1"), "ada", "pw-ada").status_code == 302
    assert attempt(Client(REMOTE_ADDR="10.0.0.2"), "alice", "pw-alice").status_code == 302


def test_the_lockout_ends_after_the_cool_off(agent_alice):
    client = Client()
    for i in range(settings.AXES_FAILURE_LIMIT):
        attempt(client, "alice", f"wrong-{i}")
    assert attempt(client, "alice", "pw-alice").status_code == 429
    past = settings.AXES_COOLOFF_TIME + timedelta(minutes=1)
    for row in AccessAttempt.objects.all():
        AccessAttempt.objects.filter(pk=row.pk).update(attempt_time=row.attempt_time - past)
    assert attempt(client, "alice", "pw-alice").status_code == 302


def test_a_successful_login_resets_the_count(agent_alice):
    client = Client()
    for i in range(settings.AXES_FAILURE_LIMIT - 1):
        attempt(client, "alice", f"wrong-{i}")
    assert attempt(client, "alice", "pw-alice").status_code == 302
    client.logout()
    for i in range(settings.AXES_FAILURE_LIMIT - 1):
        assert attempt(client, "alice", f"again-{i}").status_code == 200
    assert attempt(client, "alice", "pw-alice").status_code == 302


def test_the_django_admin_login_is_throttled_too(admin_ada):
    client = Client()
    path = reverse("admin:login")
    codes = [attempt(client, "ada", f"wrong-{i}", path).status_code for i in range(settings.AXES_FAILURE_LIMIT + 2)]
    assert codes[-1] == 429
    assert attempt(client, "ada", "pw-ada", path).status_code == 429
