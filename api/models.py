"""API tokens, idempotency keys for ticket intake, and outgoing webhooks with their delivery log."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.core.validators import URLValidator
from django.db import models
from django.utils import timezone

TOKEN_PREFIX = "trg_"
IDEMPOTENCY_KEY_MAX = 255


def hash_token(secret: str) -> str:
    """SHA-256 hex digest of a token secret: the only form in which a token is stored."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class ApiToken(models.Model):
    """A bearer token for one user. The secret is shown once, at creation; only its hash is kept.

    What a request may do is the intersection of the user's roles (groups) and the token's scope:
    an ``agent`` token of an admin cannot change thresholds, an ``admin`` token of an agent is an
    agent token, an ``integration`` token may only create tickets.
    """

    class Scope(models.TextChoices):
        AGENT = "agent", "Agent"
        ADMIN = "admin", "Admin"
        INTEGRATION = "integration", "Integration (create tickets only)"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="What uses this token, e.g. 'email gateway'.")
    scope = models.CharField(max_length=16, choices=Scope.choices)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    # The first characters of the secret, so that a person can tell their tokens apart.
    prefix = models.CharField(max_length=12, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["user", "name"], name="api_token_name_unique_per_user")]

    def __str__(self) -> str:
        return f"{self.name} ({self.scope}, {self.prefix}…)"

    @classmethod
    def issue(cls, user, *, name: str, scope: str) -> tuple[ApiToken, str]:
        """Create a token and return it with its secret, which is not stored and cannot be shown again.

        >>> token, secret = ApiToken.issue(user, name="email gateway", scope="integration")
        >>> secret.startswith("trg_")
        True
        """
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token = cls.objects.create(user=user, name=name, scope=scope, digest=hash_token(secret), prefix=secret[:8])
        return token, secret

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def revoke(self) -> None:
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            self.save(update_fields=["revoked_at"])

    def touch(self, every: timedelta = timedelta(minutes=1)) -> bool:
        """Record use, at most once a minute, so that a busy integration does not write on every request.
        True when it wrote."""
        now = timezone.now()
        if self.last_used_at is None or now - self.last_used_at >= every:
            ApiToken.objects.filter(pk=self.pk).update(last_used_at=now)
            self.last_used_at = now
            return True
        return False


class IdempotencyKey(models.Model):
    """The outcome of a ticket creation sent with an ``Idempotency-Key`` header, kept for replays."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=IDEMPOTENCY_KEY_MAX)
    request_hash = models.CharField(max_length=64, help_text="SHA-256 of the canonical JSON of the request body.")
    ticket = models.ForeignKey("triage.Ticket", null=True, on_delete=models.SET_NULL, related_name="+")
    response_status = models.PositiveSmallIntegerField()
    response_body = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="idempotency_key_unique_per_user")]

    def __str__(self) -> str:
        return self.key


class WebhookEndpoint(models.Model):
    """A URL that receives signed POSTs when tickets are routed or need triage."""

    class Event(models.TextChoices):
        TICKET_ROUTED = "ticket.routed", "Ticket auto-routed"
        TICKET_NEEDS_TRIAGE = "ticket.needs_triage", "Ticket needs a person (suggested or abstained)"
        TICKET_TAGGED = "ticket.tagged", "A tag admins chose to notify on (its notify flag) became set on a ticket"

    name = models.CharField(max_length=100)
    url = models.URLField(max_length=500, validators=[URLValidator(schemes=["http", "https"])])
    secret = models.CharField(
        max_length=128,
        default="",
        blank=True,
        help_text="HMAC key for the X-Triage-Signature header; a random one is generated when left empty.",
    )
    events = models.JSONField(default=list, help_text='Event names, e.g. ["ticket.routed", "ticket.needs_triage"].')
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} → {self.url}"

    def save(self, *args, **kwargs) -> None:
        if not self.secret:
            self.secret = secrets.token_urlsafe(32)
        super().save(*args, **kwargs)

    def wants(self, event: str) -> bool:
        return self.active and event in (self.events or [])


class WebhookDelivery(models.Model):
    """One event for one endpoint, and every attempt to deliver it."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed (gave up)"

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=64)
    payload = models.JSONField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Of the last attempt.")
    response_excerpt = models.TextField(blank=True)
    error = models.TextField(blank=True)
    next_retry_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # A worker holds the row until this time; a worker that died mid-send lets it go by then.
    lease_until = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return f"{self.event} → {self.endpoint.name} ({self.state})"
