"""The database endpoints' secrets, encrypted at rest with ``cryptography``'s Fernet.

Keys come from ``KLAREFI_ENCRYPTION_KEYS``, a list of Fernet keys (each made by
``cryptography.fernet.Fernet.generate_key()``): the first encrypts, every one of them
decrypts (a ``MultiFernet``), so a new key is put first and the old one kept after it
until ``manage.py klarefi_reencrypt_secrets`` has re-encrypted every stored secret.

``cryptography`` is the optional extra ``django-klarefi[encryption]``; it is imported at
first use only. Every failure is a :class:`SecretsUnavailable` whose message names what to
install or set, and never contains a secret or a key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured

from django_klarefi.conf import conf

if TYPE_CHECKING:
    from cryptography.fernet import MultiFernet

__all__ = [
    "SecretsUnavailable",
    "decrypt",
    "encrypt",
    "invalid_key_positions",
    "reencrypt",
]

INSTALL_HINT = "pip install 'django-klarefi[encryption]'"
KEYS_HINT = (
    "Set KLAREFI_ENCRYPTION_KEYS to a list of Fernet keys, such as "
    '[os.environ["KLAREFI_ENCRYPTION_KEY"]], each made by '
    "\"python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'\"."
)


class SecretsUnavailable(ImproperlyConfigured):
    """A database endpoint's secret cannot be encrypted or decrypted: ``cryptography`` is
    missing, ``KLAREFI_ENCRYPTION_KEYS`` is unset or invalid, or no key opens the stored
    value. The message says which, and what to do; it never contains a secret."""


def encrypt(secret: str) -> str:
    """``secret`` encrypted with the first key: a Fernet token, as text."""
    return _multi_fernet().encrypt(secret.encode("utf-8")).decode("ascii")


def decrypt(token: str) -> str:
    """The secret that ``token`` holds, opened with any of the keys."""
    fernet = _multi_fernet()  # first: it says so when cryptography is missing
    from cryptography.fernet import InvalidToken

    try:
        return fernet.decrypt(token.encode("ascii")).decode("utf-8")
    except (InvalidToken, UnicodeError):
        raise SecretsUnavailable(
            "A stored endpoint secret cannot be decrypted with any key of "
            "KLAREFI_ENCRYPTION_KEYS: the key that encrypted it was removed or changed.",
        ) from None


def reencrypt(token: str) -> str:
    """``token`` encrypted again with the first key (``MultiFernet.rotate``)."""
    fernet = _multi_fernet()  # first: it says so when cryptography is missing
    from cryptography.fernet import InvalidToken

    try:
        return fernet.rotate(token.encode("ascii")).decode("ascii")
    except (InvalidToken, UnicodeError):
        raise SecretsUnavailable(
            "A stored endpoint secret cannot be decrypted with any key of "
            "KLAREFI_ENCRYPTION_KEYS, so it cannot be re-encrypted.",
        ) from None


def invalid_key_positions(keys: Any) -> list[int] | None:
    """The positions of the entries of ``keys`` that are not Fernet keys; None when
    ``keys`` is not a list or tuple. Needs no ``cryptography``: a Fernet key is 32 bytes
    in URL-safe base64."""
    if not isinstance(keys, list | tuple):
        return None
    return [index for index, key in enumerate(keys) if not _is_fernet_key(key)]


def _is_fernet_key(key: object) -> bool:
    import base64
    import binascii

    if isinstance(key, str):
        try:
            key = key.encode("ascii")
        except UnicodeError:
            return False
    if not isinstance(key, bytes) or len(key) != 44:
        return False
    try:
        return len(base64.urlsafe_b64decode(key)) == 32
    except (binascii.Error, ValueError):
        return False


def _multi_fernet() -> MultiFernet:
    try:
        from cryptography.fernet import Fernet, MultiFernet
    except ImportError:
        raise SecretsUnavailable(
            "Database endpoints need the cryptography package to encrypt their secrets, "
            f"and it is not installed: {INSTALL_HINT}."
        ) from None
    keys = conf.ENCRYPTION_KEYS
    if not keys:
        raise SecretsUnavailable(f"KLAREFI_ENCRYPTION_KEYS is not set. {KEYS_HINT}")
    invalid = invalid_key_positions(keys)
    if invalid is None or invalid:
        where = "is not a list" if invalid is None else f"entries {invalid} are not Fernet keys"
        raise SecretsUnavailable(f"KLAREFI_ENCRYPTION_KEYS {where}. {KEYS_HINT}")
    return MultiFernet([Fernet(key) for key in keys])
