"""The ``Endpoint`` model: a Klarefi account added at run time, its secret encrypted at rest.

::

    Endpoint.objects.create(name="tenant-42", secret="whsec_...")

serves ``/webhooks/klarefi/tenant-42``. The secret is encrypted with the first key of
``KLAREFI_ENCRYPTION_KEYS`` (:mod:`django_klarefi.encryption`) as soon as it is set: no
column ever holds its text. Imported by :mod:`django_klarefi.models`, where it belongs.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from django_klarefi import encryption
from django_klarefi.conf import PROCESSING_MODES
from django_klarefi.endpoint_settings import (
    ENDPOINT_NAME_MAX_LENGTH,
    is_valid_name,
    settings_endpoints,
)

__all__ = ["Endpoint"]


def validate_endpoint_name(name: str) -> None:
    """A valid name, not defined in the settings (where it would shadow this row)."""
    if not is_valid_name(name):
        raise ValidationError(
            _(
                "Use lower-case letters, digits, hyphens and underscores, starting with a "
                "letter or digit, at most %(length)d characters."
            ),
            params={"length": ENDPOINT_NAME_MAX_LENGTH},
            code="invalid",
        )
    if name in settings_endpoints():
        raise ValidationError(
            _(
                'The endpoint "%(name)s" is defined in the settings (KLAREFI_WEBHOOK_SECRET '
                "or KLAREFI_ENDPOINTS); a name may be in the settings or in the database, "
                "not both. Choose another name, or remove it from the settings first."
            ),
            params={"name": name},
            code="defined_in_settings",
        )


class Endpoint(models.Model):
    """A Klarefi account whose deliveries this site receives, defined in the database.

    ``secret`` is write-mostly: setting it encrypts it at once, reading it decrypts it.
    Both raise :class:`~django_klarefi.encryption.SecretsUnavailable` without
    ``cryptography`` or ``KLAREFI_ENCRYPTION_KEYS``. :meth:`rotate_secret` keeps the
    previous secret valid for a while, so that deliveries signed before the change in
    Klarefi's dashboard are still accepted.
    """

    name = models.CharField(
        _("name"),
        max_length=ENDPOINT_NAME_MAX_LENGTH,
        unique=True,
        validators=[validate_endpoint_name],
        help_text=_(
            "Part of the delivery URL: /webhooks/klarefi/<name>. Lower-case letters, "
            "digits, hyphens and underscores."
        ),
    )
    encrypted_secret = models.TextField(_("encrypted secret"), editable=False)
    encrypted_previous_secret = models.TextField(
        _("encrypted previous secret"), blank=True, default="", editable=False
    )
    previous_secret_expires_at = models.DateTimeField(
        _("previous secret valid until"), null=True, blank=True, editable=False
    )
    is_active = models.BooleanField(
        _("active"), default=True, help_text=_("An inactive endpoint answers 404.")
    )
    tolerance = models.PositiveIntegerField(
        _("tolerance"),
        null=True,
        blank=True,
        help_text=_(
            "Seconds a signature's timestamp may be off. Empty: KLAREFI_WEBHOOK_TOLERANCE."
        ),
    )
    processing = models.CharField(
        _("processing"),
        max_length=8,
        blank=True,
        choices=[(mode, mode) for mode in PROCESSING_MODES],
        help_text=_("Run handlers in the request (sync) or queue them (task). Empty: "
                    "KLAREFI_PROCESSING."),
    )  # fmt: skip
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("Klarefi endpoint")
        verbose_name_plural = _("Klarefi endpoints")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: object, **kwargs: object) -> None:
        """Refuses (``ValidationError``) an invalid name, a name defined in the settings,
        and a row without a secret."""
        validate_endpoint_name(self.name)
        if not self.encrypted_secret:
            raise ValidationError(
                _('The endpoint "%(name)s" has no secret: pass secret="whsec_..."'),
                params={"name": self.name},
            )
        super().save(*args, **kwargs)  # type: ignore[arg-type]

    @property
    def secret(self) -> str:
        """The current signing secret, decrypted."""
        return encryption.decrypt(self.encrypted_secret)

    @secret.setter
    def secret(self, value: str) -> None:
        self.encrypted_secret = encryption.encrypt(_checked_secret(value))

    def rotate_secret(self, new_secret: str, *, keep_previous_for: timedelta) -> None:
        """Make ``new_secret`` the signing secret, and keep the current one valid for
        ``keep_previous_for`` more (nothing kept for zero). Call :meth:`save` after."""
        checked = _checked_secret(new_secret)
        if keep_previous_for > timedelta(0) and self.encrypted_secret:
            self.encrypted_previous_secret = self.encrypted_secret
            self.previous_secret_expires_at = timezone.now() + keep_previous_for
        else:
            self.encrypted_previous_secret = ""
            self.previous_secret_expires_at = None
        self.encrypted_secret = encryption.encrypt(checked)

    def secrets(self, now: datetime | None = None) -> tuple[str, ...]:
        """The secrets a delivery may be signed with now: the current one first, then the
        previous one until it expires. Decrypts; may raise ``SecretsUnavailable``."""
        current = encryption.decrypt(self.encrypted_secret)
        if self.encrypted_previous_secret and self.previous_valid(now):
            return (current, encryption.decrypt(self.encrypted_previous_secret))
        return (current,)

    def previous_valid(self, now: datetime | None = None) -> bool:
        """Whether the previous secret is still accepted."""
        expires = self.previous_secret_expires_at
        return expires is not None and (now or timezone.now()) < expires

    def clean(self) -> None:
        super().clean()
        if not self.encrypted_secret:
            raise ValidationError(_("Set the endpoint's signing secret."))


def _checked_secret(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("An endpoint's secret must be a non-empty string.")
    if value != value.strip():
        raise ValueError(
            "An endpoint's secret has leading or trailing whitespace; secrets are used "
            "verbatim, so Klarefi's deliveries would not match it. Strip it first."
        )
    return value
