from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from config.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("django-admin/", admin.site.urls),
    path("api/", include("api.urls")),
    path("", include("triage.urls")),
    path("kb/", include("search.urls")),
    path("", include("tags.urls")),
    path("models/", include("learning.urls")),
]

# Under /api/ these answer JSON (api/errors.py); elsewhere Django's own pages. A database or broker
# outage raised outside a view answers 503 + Retry-After either way (config/unavailable.py).
handler400 = "api.errors.bad_request"
handler403 = "api.errors.permission_denied"
handler404 = "api.errors.page_not_found"
handler500 = "api.errors.server_error"
