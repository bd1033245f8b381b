"""The SSLContext of a rediss:// target, built the same way for validation and connections."""

from __future__ import annotations

import ssl

from exporter.config.model import TLSConfig


def tls_context(tls: TLSConfig) -> ssl.SSLContext:
    """CA (or the system's), optional client certificate, optional skip-verify.

    Raises ssl.SSLError or OSError when a file cannot be loaded.
    """
    context = ssl.create_default_context(cafile=tls.ca_file)
    if tls.cert_file:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
