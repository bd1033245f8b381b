"""`--web.config.file` in exporter-toolkit format: TLS and bcrypt basic auth for the HTTP side.

Parsed and checked once, before the port is bound; every problem has its key path. Key names
and meanings follow exporter-toolkit's `docs/web-configuration.md`; keys it knows that this
exporter does not implement are errors that say so, rather than silently ignored.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from exporter.config.checks import Problems, check_mapping, join

CLIENT_AUTH_TYPES = ("NoClientCert", "RequestClientCert", "RequireAnyClientCert",
                     "VerifyClientCertIfGiven", "RequireAndVerifyClientCert")
TLS_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}

_TLS_KEYS = {"cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version",
             "max_version"}
# Known to exporter-toolkit, not implemented here: an error that says so, never ignored.
_NOT_SUPPORTED = {
    "": {"rate_limit"},
    "tls_server_config": {"cert", "key", "client_ca", "client_allowed_sans", "cipher_suites",
                          "prefer_server_cipher_suites", "curve_preferences"},
    "http_server_config": {"headers"},
}
_TOP_KEYS = {"tls_server_config", "http_server_config", "basic_auth_users"}
_BCRYPT = re.compile(r"\$2[abxy]?\$(\d\d)\$[./A-Za-z0-9]{53}")


class WebConfigError(Exception):
    """The web config file is invalid; `problems` lists each with its key path, no secret."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class TLSServerConfig:
    """`tls_server_config`, file paths already resolved against the web config's directory."""

    cert_file: str
    key_file: str
    client_auth_type: str = "NoClientCert"
    client_ca_file: str | None = None
    min_version: str = "TLS12"
    max_version: str = "TLS13"


@dataclass(frozen=True)
class WebConfig:
    """The whole file. `users` maps a user to its bcrypt hash; kept out of the repr."""

    path: str
    tls: TLSServerConfig | None = None
    users: Mapping[str, bytes] = field(default_factory=dict, repr=False)


def load_web_config(path: str) -> WebConfig:
    """Read, validate, and load the TLS files once (so a bad key fails before binding)."""
    try:
        with open(path, encoding="utf-8") as handle:
            raw = yaml.safe_load(handle)
    except OSError as error:
        raise WebConfigError([f"{path}: cannot read: {error.strerror}"]) from None
    except yaml.YAMLError as error:  # position only: the text around it may hold a hash
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise WebConfigError([f"{path}: not valid YAML{where}"]) from None
    problems: list[str] = []
    config = _parse(raw, os.path.dirname(os.path.abspath(path)), path, problems)
    if config.tls is not None and not problems:
        try:
            server_ssl_context(config.tls)
        except WebConfigError as error:
            problems.extend(error.problems)
    if problems:
        raise WebConfigError(problems)
    return config


def _parse(raw: object, base: str, path: str, problems: list[str]) -> WebConfig:
    if raw is None:  # an empty file: plain HTTP, no auth (as exporter-toolkit)
        return WebConfig(path)
    top = _section(raw, "", _TOP_KEYS, problems)
    tls = None
    if "tls_server_config" in top:
        tls = _parse_tls(_section(top["tls_server_config"], "tls_server_config", _TLS_KEYS,
                                  problems), base, problems)
    if "http_server_config" in top:
        _parse_http(_section(top["http_server_config"], "http_server_config", {"http2"},
                             problems), problems)
    users = _parse_users(top.get("basic_auth_users"), problems)
    return WebConfig(path, tls, users)


def _section(node: object, path: str, known: set[str], problems: list[str]) -> dict[str, Any]:
    """config_checks.check_mapping (not a mapping, unknown keys), plus the keys exporter-toolkit
    knows that this exporter does not support (reported, and kept: a TLS section holding only
    those still needs its cert_file and key_file)."""
    unsupported = _NOT_SUPPORTED[path]
    found = Problems()
    section = check_mapping(node, path, sorted(known | unsupported), found)
    problems.extend(found.items)
    for key in sorted(unsupported & set(section)):
        problems.append(f"{join(path, key)}: not supported by redis-connection-exporter")
    return dict(section)


def _parse_tls(raw: dict[Any, Any], base: str, problems: list[str]) -> TLSServerConfig | None:
    prefix = "tls_server_config"
    if not raw:
        return None
    strings: dict[str, str] = {}
    for key in _TLS_KEYS & set(raw):
        if isinstance(raw[key], str) and raw[key]:
            strings[key] = raw[key]
        elif raw[key] is not None:
            problems.append(f"{prefix}.{key}: must be a non-empty string")
    for key in ("cert_file", "key_file"):
        if key not in strings and key not in raw:
            problems.append(f"{prefix}.{key}: required when tls_server_config is set")
    # exporter-toolkit resolves relative paths against the web config file's directory.
    files = {key: os.path.join(base, strings[key])
             for key in ("cert_file", "key_file", "client_ca_file") if key in strings}
    auth = strings.get("client_auth_type", "NoClientCert")
    _check_choices(strings, auth, problems)
    if "client_ca_file" in files and auth == "NoClientCert":
        problems.append(f"{prefix}.client_ca_file: set, but client_auth_type is NoClientCert")
    if "cert_file" not in files or "key_file" not in files:
        return None
    return TLSServerConfig(files["cert_file"], files["key_file"], auth,
                           files.get("client_ca_file"), strings.get("min_version", "TLS12"),
                           strings.get("max_version", "TLS13"))


def _check_choices(strings: dict[str, str], auth: str, problems: list[str]) -> None:
    prefix = "tls_server_config"
    if auth in ("RequireAnyClientCert", "RequireClientCert"):
        # Python's ssl module cannot require a certificate without verifying it.
        problems.append(f"{prefix}.client_auth_type: {auth} is not supported by "
                        "redis-connection-exporter (use RequireAndVerifyClientCert)")
    elif auth not in CLIENT_AUTH_TYPES:
        problems.append(f"{prefix}.client_auth_type: must be one of "
                        f"{', '.join(CLIENT_AUTH_TYPES)}")
    for key in ("min_version", "max_version"):
        value = strings.get(key)
        if value in ("TLS10", "TLS11"):
            problems.append(f"{prefix}.{key}: {value} is not supported (TLS12 or TLS13)")
        elif value is not None and value not in TLS_VERSIONS:
            problems.append(f"{prefix}.{key}: must be TLS12 or TLS13")
    low, high = strings.get("min_version", "TLS12"), strings.get("max_version", "TLS13")
    if low in TLS_VERSIONS and high in TLS_VERSIONS and TLS_VERSIONS[low] > TLS_VERSIONS[high]:
        problems.append(f"{prefix}.min_version: above max_version")


def _parse_http(raw: dict[Any, Any], problems: list[str]) -> None:
    if "http2" in raw and raw["http2"] is not False:
        # Only the value this server honours is accepted: it speaks HTTP/1.1.
        problems.append("http_server_config.http2: HTTP/2 is not supported by "
                        "redis-connection-exporter (set false or remove the key)")


def _parse_users(raw: object, problems: list[str]) -> dict[str, bytes]:
    users: dict[str, bytes] = {}
    users_node = raw if isinstance(raw, Mapping) else None  # user names are free-form keys
    if raw is not None and users_node is None:
        problems.append("basic_auth_users: must be a mapping")
    for user, hashed in (users_node or {}).items():
        where = f"basic_auth_users.{user}"
        if not isinstance(user, str) or not user or ":" in user:
            problems.append(f"{where}: user names are non-empty strings without ':'")
            continue
        match = _BCRYPT.fullmatch(hashed) if isinstance(hashed, str) else None
        if match is None or not 4 <= int(match.group(1)) <= 31:
            problems.append(f"{where}: not a bcrypt hash (htpasswd -nBC 10 \"\" | tr -d ':\\n')")
            continue
        users[user] = hashed.encode("ascii")
    return users


def server_ssl_context(tls: TLSServerConfig) -> ssl.SSLContext:
    """The listening side's SSLContext; raises WebConfigError naming the key at fault."""
    prefix = "tls_server_config"
    for key in ("cert_file", "key_file", "client_ca_file"):
        path = getattr(tls, key)
        try:
            if path is not None:
                with open(path, "rb"):
                    pass
        except OSError as error:
            raise WebConfigError([f"{prefix}.{key}: cannot read {path}: "
                                  f"{error.strerror}"]) from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = TLS_VERSIONS[tls.min_version]
    context.maximum_version = TLS_VERSIONS[tls.max_version]
    context.set_alpn_protocols(["http/1.1"])
    try:  # a passphrase-protected key fails here instead of prompting on the terminal
        context.load_cert_chain(tls.cert_file, tls.key_file, password=lambda: b"")
    except ssl.SSLError as error:
        raise WebConfigError([f"{prefix}: cert_file and key_file are not a PEM certificate "
                              f"and its unencrypted key ({error.reason})"]) from None
    _client_verification(context, tls)
    return context


def _client_verification(context: ssl.SSLContext, tls: TLSServerConfig) -> None:
    # RequestClientCert asks for a certificate and never checks it; this server never reads
    # one, so not asking (CERT_NONE) lets in exactly the same clients.
    if tls.client_auth_type in ("NoClientCert", "RequestClientCert"):
        return
    context.verify_mode = (ssl.CERT_REQUIRED if tls.client_auth_type ==
                           "RequireAndVerifyClientCert" else ssl.CERT_OPTIONAL)
    if tls.client_ca_file is None:  # as Go's crypto/tls: the system's CAs
        context.load_default_certs(ssl.Purpose.CLIENT_AUTH)
        return
    try:
        context.load_verify_locations(cafile=tls.client_ca_file)
    except ssl.SSLError as error:
        raise WebConfigError([f"tls_server_config.client_ca_file: no PEM CA certificate in "
                              f"{tls.client_ca_file} ({error.reason})"]) from None
