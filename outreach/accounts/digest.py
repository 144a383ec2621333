"""The stored form of a random bearer secret (a staff session cookie, an API token)."""

from __future__ import annotations

import hashlib


def secret_digest(secret: str) -> str:
    """SHA-256, hex. Enough for 256 random bits, unlike passwords (those get argon2 in ``users``);
    and it is deterministic, so the stored digest can be looked up by an index."""
    return hashlib.sha256(secret.encode()).hexdigest()
