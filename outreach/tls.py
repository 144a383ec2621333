"""One TLS context for the process's httpx clients.

httpx builds a context for every client it makes, loading the CA bundle each time: about 20 ms
of CPU. The sandbox makes a client for each control handle and each fake phone's sender, and a
busy test run makes hundreds; one context, built when first needed, serves them all (a context
is safe to share between clients and threads).
"""

from __future__ import annotations

import ssl
from functools import cache

import httpx


@cache
def shared_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()
