"""One TLS context for the process's httpx clients.

httpx builds a context for every client it makes, loading the CA bundle each time: about 20 ms
of CPU. The sandbox makes a client for each control handle and each fake phone's sender, and a
busy test run makes hundreds; one context, built when first needed, serves them all (a context
is safe to share between clients and threads). It is built again if ``SSL_CERT_FILE`` or
``SSL_CERT_DIR``, which httpx reads, name other certificates.
"""

from __future__ import annotations

import os
import ssl
from functools import cache

import httpx


def shared_context() -> ssl.SSLContext:
    return _context(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@cache
def _context(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    # The arguments are the cache's key: httpx reads the same variables itself.
    return httpx.create_ssl_context()
