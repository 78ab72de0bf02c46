"""Security checks shared by the native stack tests and the compose e2e (docs/security.md).

- ``prometheus_write_apis_refused``: Prometheus' admin API (TSDB delete/snapshot/clean) and
  lifecycle API (quit/reload) answer with their "not enabled" refusal, and Prometheus is still
  ready afterwards;
- ``process_facts``: what the kernel says about a process (uids, capabilities, no_new_privs,
  seccomp, root mount read-only), read from the host's /proc: it needs no shell in the image.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import httpx

# (method, path, what Prometheus answers when the API is off)
PROMETHEUS_REFUSED = [
    *[(m, f"/api/v1/admin/tsdb/{p}", "admin APIs disabled")
      for m in ("POST", "PUT") for p in ("delete_series?match[]=up", "snapshot", "clean_tombstones")],
    *[(m, p, "Lifecycle API is not enabled") for m in ("POST", "PUT") for p in ("/-/quit", "/-/reload")],
]


def prometheus_write_apis_refused(base: str) -> dict[str, str]:
    """Each admin/lifecycle call with its status and body; raises AssertionError when one is not
    refused by configuration or Prometheus is no longer ready after them."""
    seen: dict[str, str] = {}
    with httpx.Client(base_url=base, timeout=10) as client:
        for method, path, refusal in PROMETHEUS_REFUSED:
            r = client.request(method, path)
            seen[f"{method} {path}"] = f"{r.status_code} {r.text.strip()[:80]}"
            assert r.status_code >= 400 and refusal in r.text, (
                f"Prometheus at {base} did not refuse {method} {path}: {r.status_code} {r.text[:300]}"
            )
        ready = client.get("/-/ready")
        assert ready.status_code == 200, f"Prometheus not ready after the refused calls: {ready.status_code}"
    return seen


@dataclass(frozen=True)
class ProcessFacts:
    pid: int
    uids: tuple[int, ...]  # real, effective, saved, filesystem
    gids: tuple[int, ...]
    cap_eff: int
    cap_prm: int
    cap_bnd: int
    no_new_privs: bool
    seccomp: int  # 0 off, 1 strict, 2 filter (the engine's default profile)
    root_read_only: bool
    mounts: dict[str, tuple[str, str]]  # mount point -> (fs type, options)


def process_facts(pid: int, proc: Path = Path("/proc")) -> ProcessFacts:
    status: dict[str, str] = {}
    for line in (proc / str(pid) / "status").read_text().splitlines():
        key, _, value = line.partition(":")
        status[key] = value.strip()
    mounts: dict[str, tuple[str, str]] = {}
    for line in (proc / str(pid) / "mountinfo").read_text().splitlines():
        # id parent major:minor root mount-point options [optional...] - fstype source super-options
        left, _, right = line.partition(" - ")
        fields, rfields = left.split(), right.split()
        mounts[fields[4]] = (rfields[0], fields[5])
    root_opts = mounts["/"][1].split(",")
    return ProcessFacts(
        pid=pid,
        uids=tuple(int(x) for x in status["Uid"].split()),
        gids=tuple(int(x) for x in status["Gid"].split()),
        cap_eff=int(status["CapEff"], 16),
        cap_prm=int(status["CapPrm"], 16),
        cap_bnd=int(status["CapBnd"], 16),
        no_new_privs=status.get("NoNewPrivs") == "1",
        seccomp=int(status.get("Seccomp", "0")),
        root_read_only="ro" in root_opts,
        mounts=mounts,
    )


def path_in_container(pid: int, path: str, proc: Path = Path("/proc")) -> str:
    """``path`` with the symlinks inside the container's root resolved (Debian: /var/run -> /run),
    i.e. the mount point mountinfo shows for a mount requested at ``path``."""
    root = proc / str(pid) / "root"
    parts = [p for p in path.split("/") if p]
    done: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            done = done[:-1]
            continue
        here = root.joinpath(*done, part)
        if here.is_symlink():
            hops += 1
            assert hops < 40, f"symlink loop resolving {path} in pid {pid}"
            target = os.readlink(here)
            if target.startswith("/"):
                done = []
            parts = [p for p in target.split("/") if p] + parts
            continue
        done.append(part)
    return "/" + "/".join(done)
