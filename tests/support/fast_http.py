"""One default TLS context for every httpx client the tests make.

``httpx.get(...)`` builds a new ``Client`` per call, and each new client builds an
``ssl.create_default_context(cafile=certifi.where())``: parsing certifi's CA bundle costs about
0.15 s of CPU on a 2-core machine, far more than the plain-HTTP request to 127.0.0.1 it is for
(the tests make thousands). The context is identical every time, so the default case (verify=True,
no client certificate, the same SSL_CERT_FILE/SSL_CERT_DIR) is built once and shared; every other
case goes to httpx as before. No test talks TLS, and none looks at the context.
"""

from __future__ import annotations

import os
import ssl
from typing import Any

import httpx._transports.default as _default

_real = _default.create_ssl_context
_cache: dict[tuple[Any, ...], ssl.SSLContext] = {}


def _shared_ssl_context(verify: Any = True, cert: Any = None, trust_env: bool = True) -> ssl.SSLContext:
    if verify is not True or cert:
        return _real(verify=verify, cert=cert, trust_env=trust_env)
    key = (trust_env, os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")) if trust_env else (False,)
    ctx = _cache.get(key)
    if ctx is None:
        ctx = _cache[key] = _real(verify=True, cert=None, trust_env=trust_env)
    return ctx


def install() -> None:
    _default.create_ssl_context = _shared_ssl_context  # type: ignore[assignment]
