"""TLS for the agent's endpoint, configured the way Prometheus exporters are.

Go exporters take `--web.config.file` in the exporter-toolkit format; the agent reads the
same file's `tls_server_config` block (`cert_file`, `key_file`, optional `client_ca_file`,
`client_auth_type`, `min_version`), so one file serves node_exporter, dcgm-exporter and this
agent. `basic_auth_users` is refused with the reason (it needs bcrypt hashing): put the agent
behind a reverse proxy for basic auth, or use client certificates (mutual TLS).
"""
from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLIENT_AUTH = {"NoClientCert": ssl.CERT_NONE, "RequestClientCert": ssl.CERT_OPTIONAL,
               "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL, "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}
TLS_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}


class WebConfigError(ValueError):
    """The web config file is wrong; the message names the file and the key."""


@dataclass(frozen=True)
class TlsConfig:
    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    client_auth_type: str = "NoClientCert"
    min_version: str = "TLS12"

    def context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = TLS_VERSIONS[self.min_version]
        ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        if self.client_ca_file is not None:
            ctx.load_verify_locations(cafile=str(self.client_ca_file))
        ctx.verify_mode = CLIENT_AUTH[self.client_auth_type]
        return ctx


def load_web_config(path: Path) -> TlsConfig | None:
    """Parse an exporter-toolkit web config; None if it configures no TLS."""
    import yaml

    try:
        data: Any = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise WebConfigError(f"web config {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise WebConfigError(f"web config {path}: expected a mapping at the top level")
    unknown = set(data) - {"tls_server_config", "basic_auth_users", "http_server_config"}
    if unknown:
        raise WebConfigError(f"web config {path}: unknown key(s) {', '.join(sorted(unknown))}")
    if data.get("basic_auth_users"):
        raise WebConfigError(f"web config {path}: basic_auth_users is not supported by the moecluster agent; "
                             "put it behind a reverse proxy for basic auth, or require client certificates "
                             "(tls_server_config.client_auth_type: RequireAndVerifyClientCert)")
    tls = data.get("tls_server_config")
    if not tls:
        return None
    if not isinstance(tls, dict):
        raise WebConfigError(f"web config {path}: tls_server_config must be a mapping")
    known = {"cert_file", "key_file", "client_ca_file", "client_auth_type", "min_version"}
    extra = set(tls) - known
    if extra:
        raise WebConfigError(f"web config {path}: tls_server_config.{sorted(extra)[0]} is not supported "
                             f"(supported: {', '.join(sorted(known))})")
    for key in ("cert_file", "key_file"):
        if not tls.get(key):
            raise WebConfigError(f"web config {path}: tls_server_config.{key} is required")
    auth = tls.get("client_auth_type", "NoClientCert")
    if auth not in CLIENT_AUTH:
        raise WebConfigError(f"web config {path}: tls_server_config.client_auth_type {auth!r} "
                             f"(one of {', '.join(CLIENT_AUTH)})")
    if auth in ("RequireAndVerifyClientCert", "VerifyClientCertIfGiven") and not tls.get("client_ca_file"):
        raise WebConfigError(f"web config {path}: client_auth_type {auth} needs tls_server_config.client_ca_file")
    version = tls.get("min_version", "TLS12")
    if version not in TLS_VERSIONS:
        raise WebConfigError(f"web config {path}: tls_server_config.min_version {version!r} (TLS12 or TLS13)")
    base = path.parent
    return TlsConfig(cert_file=base / tls["cert_file"], key_file=base / tls["key_file"],
                     client_ca_file=base / tls["client_ca_file"] if tls.get("client_ca_file") else None,
                     client_auth_type=auth, min_version=version)
