"""Security audit, statically: loopback-only publishing, container hardening, no committed secret.

- every `ports:` entry of compose.yaml binds ${BIND_ADDRESS:-127.0.0.1}, .env keeps it loopback, and
  the e2e's override files publish nothing of their own;
- every service drops all capabilities, sets no-new-privileges, runs as a non-root user, and has a
  read-only root filesystem unless it is a named exception whose reason is written in compose.yaml
  and docs/security.md (the compose e2e proves the same on the running containers);
- Prometheus' lifecycle and admin APIs stay off (the stack tests prove the endpoints refuse);
- no file git tracks (or would track) holds one of .env's secret values or a well-known secret
  pattern; .env itself holds the local-only values on purpose.

docs/security.md is the prose for all of this.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.static.binaries import REPO
from tests.static.test_compose import COMPOSE, ENV, compose_config

SECURITY_MD = REPO / "docs" / "security.md"
BIND_DEFAULT = "${BIND_ADDRESS:-127.0.0.1}"

# Services whose root filesystem stays writable, with the word the reason in compose.yaml and
# docs/security.md must contain. Everything else must be read_only.
WRITABLE_ROOT = {
    "opensearch": "keystore",  # creates/upgrades config/opensearch.keystore at every start
    "tempo": "unproven",  # AGPL: cannot run here, so a read-only root cannot be proven
    "grafana": "unproven",  # AGPL: cannot run here; no documented read-only mode
}
# Services whose image starts as root: compose must name a non-root user for them.
ROOT_IMAGES = {"postgres"}
# Dockerfiles of images compose builds: their final USER must not be root (no USER = the base
# image's user, which for these bases is non-root: otel contrib 10001, tempo 10001).
BUILT_DOCKERFILES = {
    REPO / "sample_service" / "Dockerfile": "10001:10001",
    REPO / "stack" / "grafana" / "Dockerfile": "472",
    REPO / "collector" / "Dockerfile": None,
    REPO / "stack" / "tempo" / "Dockerfile": None,
}


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return compose_config()["services"]


# ------------------------------------------------------------------------------- loopback only
def test_every_ports_entry_binds_bind_address_defaulting_to_loopback() -> None:
    raw = yaml.safe_load(COMPOSE.read_text())
    seen = 0
    for name, svc in raw["services"].items():
        for entry in svc.get("ports") or []:
            assert isinstance(entry, str), f"{name}: long-form port {entry!r} (use the short form)"
            assert entry.startswith(BIND_DEFAULT + ":"), (
                f"{name}: {entry!r} does not bind {BIND_DEFAULT}"
            )
            assert re.fullmatch(re.escape(BIND_DEFAULT) + r":\d+:\d+", entry), f"{name}: {entry!r}"
            seen += 1
    assert seen >= 11  # every published port of compose.yaml (8889 left with the span-metrics push)
    assert ENV["BIND_ADDRESS"] == "127.0.0.1", ".env must keep BIND_ADDRESS on loopback"


def test_without_env_every_port_resolves_to_loopback(tmp_path: Path) -> None:
    """No .env at all (only the required secrets given): still 127.0.0.1, never 0.0.0.0."""
    empty = tmp_path / "empty.env"
    empty.write_text("")
    secrets = {k: ENV[k] for k in ENV if k.startswith(("POSTGRES_", "GRAFANA_ADMIN_"))}
    s = compose_config(env_file=empty, extra_env=secrets)["services"]
    ips = {p.get("host_ip") for svc in s.values() for p in svc.get("ports", [])}
    assert ips == {"127.0.0.1"}, ips


class _TagTolerantLoader(yaml.SafeLoader):
    """Reads compose's `!reset` / `!override` tags as the plain node under them."""


def _untagged(loader: yaml.SafeLoader, _suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_scalar(node)  # type: ignore[arg-type]


_TagTolerantLoader.add_multi_constructor("!", _untagged)


def test_override_files_publish_nothing_of_their_own() -> None:
    """The e2e's overrides must not add ports: the e2e then publishes exactly compose.yaml's."""
    for path in sorted((REPO / "tests" / "compose").rglob("*.yaml")):
        raw = yaml.load(path.read_text(), Loader=_TagTolerantLoader) or {}
        for name, svc in (raw.get("services") or {}).items():
            assert "ports" not in (svc or {}), f"{path.relative_to(REPO)}: {name} publishes ports"


# ---------------------------------------------------------------------------------- hardening
def test_every_service_drops_all_capabilities_and_privilege_gain(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        assert svc.get("cap_drop") == ["ALL"], f"{name}: cap_drop {svc.get('cap_drop')}"
        assert not svc.get("cap_add"), f"{name}: cap_add {svc.get('cap_add')} (none is needed)"
        opts = svc.get("security_opt") or []
        assert "no-new-privileges:true" in opts, f"{name}: security_opt {opts}"
        assert not svc.get("privileged"), name
        for key in ("network_mode", "pid", "ipc", "userns_mode"):
            assert svc.get(key) != "host", f"{name}: {key}: host"
        assert not svc.get("devices"), name
        for m in svc.get("volumes", []):
            assert "docker.sock" not in str(m.get("source", "")), f"{name} mounts the engine socket"


def test_read_only_root_everywhere_but_the_named_exceptions(services: dict[str, Any]) -> None:
    text = COMPOSE.read_text()
    doc = SECURITY_MD.read_text()
    for name, svc in services.items():
        if name in WRITABLE_ROOT:
            assert not svc.get("read_only"), f"{name} is read-only now: drop it from WRITABLE_ROOT"
            block = _service_block(text, name)
            assert "Root filesystem left writable" in block and WRITABLE_ROOT[name] in block, (
                f"{name}: compose.yaml must say why its root filesystem is writable"
            )
            row = [line for line in doc.splitlines() if line.startswith(f"| `{name}`")]
            assert row and WRITABLE_ROOT[name] in row[0], f"docs/security.md: no row for {name} saying why"
        else:
            assert svc.get("read_only") is True, f"{name}: root filesystem is writable"
        for t in svc.get("tmpfs") or []:
            assert t.split(":")[0] in ("/tmp", "/var/run/postgresql"), f"{name}: unexpected tmpfs {t}"


def test_non_root_users(services: dict[str, Any]) -> None:
    for name in ROOT_IMAGES:
        user = str(services[name].get("user", ""))
        assert user and user.split(":")[0] not in ("root", "0"), f"{name} starts as root: user={user!r}"
    for name, svc in services.items():
        user = str(svc.get("user", ""))
        assert user.split(":")[0] not in ("root", "0"), f"{name}: user {user!r}"
    for path, want in BUILT_DOCKERFILES.items():
        users = re.findall(r"^USER\s+(\S+)", path.read_text(), re.M)
        if want is None:
            assert not users, f"{path.relative_to(REPO)}: must keep the base image's non-root user"
        else:
            assert users and users[-1] == want, f"{path.relative_to(REPO)}: final USER {users[-1:]}"


def test_prometheus_admin_and_lifecycle_apis_stay_off(services: dict[str, Any]) -> None:
    flags = services["prometheus"]["command"]
    for flag in ("--web.enable-lifecycle", "--web.enable-admin-api"):
        assert not any(f.startswith(flag) for f in flags), f"prometheus: {flag} is on"


def test_opensearch_security_plugin_off_is_documented(services: dict[str, Any]) -> None:
    env = services["opensearch"]["environment"]
    assert env.get("DISABLE_SECURITY_PLUGIN") == "true"
    block = _service_block(COMPOSE.read_text(), "opensearch")
    assert "BIND_ADDRESS" in block and "security plugin" in block.lower()
    doc = SECURITY_MD.read_text()
    assert "OPENSEARCH_INITIAL_ADMIN_PASSWORD" in doc and "DISABLE_SECURITY_PLUGIN" in doc


def test_security_doc_is_linked_and_names_the_minimum_engine() -> None:
    readme = (REPO / "README.md").read_text()
    assert "docs/security.md" in readme
    doc = SECURITY_MD.read_text()
    for needle in ("28.0.0", "28.3.3", "moby/moby/pull/49325", "CVE-2025-54388"):
        assert needle in doc, f"docs/security.md does not mention {needle}"
    assert "28.3.3" in readme


def _service_block(text: str, name: str) -> str:
    m = re.search(rf"^  {re.escape(name)}:\n(.*?)(?=^  [a-z][\w-]*:\n|^\S)", text, re.M | re.S)
    assert m, f"no service block {name} in compose.yaml"
    return m.group(1)


# ---------------------------------------------------------------------------------- secrets
SECRET_KEY = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY|PRIVATE_KEY")
PATTERNS = {
    "private key": rb"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----",
    "AWS access key id": rb"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
    "GitHub token": rb"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})\b",
    "Slack token": rb"\bxox[abprs]-[A-Za-z0-9-]{10,}",
    "Grafana token": rb"\b(?:glsa_[A-Za-z0-9]{32}_[0-9a-f]{8}|glc_[A-Za-z0-9+/]{32,}={0,2})",
    "Google API key": rb"\bAIza[0-9A-Za-z_-]{35}\b",
    "OpenAI/Stripe-style secret key": rb"\b(?:sk-[A-Za-z0-9_-]{32,}|sk_live_[0-9A-Za-z]{24,})",
    "JSON web token": rb"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}",
}
ALLOWED = {".env"}  # the local-only values, on purpose (README, "Security defaults")


def secret_values(env: dict[str, str]) -> dict[str, str]:
    """The .env values that are secrets (by key name), for the file scan and the image scan."""
    out = {k: v for k, v in env.items() if SECRET_KEY.search(k) and v}
    assert all(len(v) >= 8 for v in out.values()), "a secret value too short to scan for"
    return out


def scan(data: bytes, values: dict[str, str]) -> list[str]:
    found = [f".env's {k}" for k, v in values.items() if v.encode() in data]
    found += [what for what, rx in PATTERNS.items() if re.search(rx, data)]
    return found


def repo_files() -> list[str]:
    """What git tracks plus what it would track (untracked, not ignored): what a commit can hold."""
    proc = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                          cwd=REPO, capture_output=True, timeout=60, check=True)
    return sorted({p for p in proc.stdout.decode().split("\0") if p})


def test_scanner_finds_what_it_looks_for(tmp_path: Path) -> None:
    values = {"X_PASSWORD": "planted-" + "s3cr3t-value"}
    planted = b"\n".join([
        b"db: postgres://u:planted-s3cr3t-value@h/d",
        b"-----BEGIN OPENSSH " + b"PRIVATE KEY-----",
        b"AKIA" + b"ABCDEFGHIJKLMNOP",
        b"ghp_" + b"a" * 36,
    ])
    found = scan(planted, values)
    assert set(found) == {".env's X_PASSWORD", "private key", "AWS access key id", "GitHub token"}, found
    assert scan(b"nothing to see: ${POSTGRES_PASSWORD:?set it in .env}", values) == []


def test_no_secret_in_any_committed_file() -> None:
    values = secret_values(ENV)
    assert {"POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD"} <= set(values)
    files = repo_files()
    assert ".env" in files and "compose.yaml" in files
    hits = {}
    for rel in files:
        if rel in ALLOWED:
            continue
        path = REPO / rel
        if path.is_symlink() or not path.is_file():
            continue
        found = scan(path.read_bytes(), values)
        if found:
            hits[rel] = found
    assert not hits, f"secrets in committed files: {hits}"
