"""Errors a user can act on. Their messages name what is wrong and where, never patient data."""

from __future__ import annotations


class OutreachError(Exception):
    """A mistake in input or configuration: the CLI prints it to stderr and exits non-zero."""

    exit_code = 1


class NotFound(OutreachError):
    exit_code = 1


class Conflict(OutreachError):
    """The change collides with a record that already exists (an external id taken)."""
