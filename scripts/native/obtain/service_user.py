"""OpenSearch refuses to run as root: the unprivileged user it runs as, and a home that user can read."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from scripts.native.obtain.steps import ObtainError, say

SERVICE_USER = "o11y"


def ensure_service_user(name: str = SERVICE_USER) -> str:
    """Create the unprivileged system user ``name`` (no home, no login) if missing; return its name."""
    import pwd

    try:
        pwd.getpwnam(name)
        return name
    except KeyError:
        pass
    if os.geteuid() != 0:
        raise ObtainError(f"system user {name!r} is missing and creating it needs root")
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True
    )
    say(f"created system user {name}")
    return name


def user_can_read(path: Path, user: str = SERVICE_USER) -> bool:
    """Can ``user`` traverse to and read ``path``? (runs ``test -r`` as that user)."""
    if os.geteuid() != 0:
        return os.access(path, os.R_OK)
    rc = subprocess.run(
        ["runuser", "-u", user, "--", "test", "-r", str(path)], capture_output=True
    ).returncode
    return rc == 0


def readable_copy(home: Path, dest: Path, user: str = SERVICE_USER) -> Path:
    """``home`` if ``user`` can read it, else a hard-linked copy at ``dest`` (a cache under /root,
    mode 700, is not readable by the service user). Same file system: costs no space."""
    if user_can_read(home / "bin" / "opensearch", user):
        return home
    if dest.exists():
        shutil.rmtree(dest)
    try:
        shutil.copytree(home, dest, copy_function=os.link, symlinks=True)
    except OSError:
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(home, dest, symlinks=True)
    return dest
