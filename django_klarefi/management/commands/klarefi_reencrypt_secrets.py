"""``manage.py klarefi_reencrypt_secrets``: encrypt every stored endpoint secret again with
the first key of ``KLAREFI_ENCRYPTION_KEYS``, the step of a key rotation that lets the old
keys be removed afterwards."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from django_klarefi.encryption import SecretsUnavailable, reencrypt
from django_klarefi.models import Endpoint


class Command(BaseCommand):
    help = (
        "Re-encrypt the secrets of every database endpoint with the first key of "
        "KLAREFI_ENCRYPTION_KEYS. Run it after putting a new key first; then the old keys "
        "can be removed. Nothing is changed if any secret cannot be decrypted."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        count = 0
        try:
            with transaction.atomic():
                for endpoint in Endpoint.objects.select_for_update().order_by("pk"):
                    endpoint.encrypted_secret = reencrypt(endpoint.encrypted_secret)
                    if endpoint.encrypted_previous_secret:
                        endpoint.encrypted_previous_secret = reencrypt(
                            endpoint.encrypted_previous_secret
                        )
                    # update_fields: no save() signal logic needed beyond the cache, and
                    # updated_at says when the secret's encryption last changed.
                    endpoint.save(
                        update_fields=[
                            "encrypted_secret",
                            "encrypted_previous_secret",
                            "updated_at",
                        ]
                    )
                    count += 1
        except SecretsUnavailable as exc:
            raise CommandError(f"{exc} Nothing was changed.") from None
        noun = "endpoint" if count == 1 else "endpoints"
        self.stdout.write(
            self.style.SUCCESS(
                f"Re-encrypted the secrets of {count} {noun} with the first key of "
                "KLAREFI_ENCRYPTION_KEYS; the other keys can now be removed."
            )
        )
