"""The TLS context the sandbox's httpx clients share."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from outreach.tls import shared_context
from tests.support.tls import make_test_tls


def test_one_context_is_shared_until_other_certificates_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    default = shared_context()
    assert shared_context() is default

    ca = make_test_tls(tmp_path).ca_file
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    own = shared_context()
    assert own is not default and shared_context() is own
    # The context built for that variable trusts that authority, as a client of its own would.
    trusted = ssl.create_default_context(cafile=str(ca)).get_ca_certs()
    assert [cert["subject"] for cert in own.get_ca_certs()] == [cert["subject"] for cert in trusted]
