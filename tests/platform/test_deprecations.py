"""No deprecation warnings from the project's own code paths (pytest.ini turns those into errors)."""

from __future__ import annotations

import warnings

import pytest
from django.contrib.auth.models import User

from config.celery import app


@pytest.fixture
def superuser_client(client, db):
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    return client


@pytest.mark.parametrize("url", ["/django-admin/search/article/add/", "/django-admin/api/webhookendpoint/add/"])
def test_admin_forms_with_a_url_field_raise_no_deprecation_warning(superuser_client, url):
    # Django 5.2 warns on every form URLField built without assume_scheme (once per form class and request).
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        response = superuser_client.get(url)
    assert response.status_code == 200


def test_celery_is_told_what_to_do_with_running_tasks_on_a_broker_connection_loss():
    # Left unset, Celery 5 warns (CPendingDeprecationWarning) on every reconnect of every worker.
    assert app.conf.worker_cancel_long_running_tasks_on_connection_loss is True
