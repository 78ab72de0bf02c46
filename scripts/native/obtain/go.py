"""The Go toolchain for builds from module sources: environment, module downloads, wrapper modules."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from scripts.native.obtain.steps import ObtainError, run_step, say

GO_LDFLAGS_STRIP = "-s -w"


def go_binary() -> str:
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if not go:
        raise ObtainError("the Go toolchain is needed (go not on PATH)")
    return go


def go_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("GOFLAGS", "-mod=mod")
    env["GOFLAGS"] = env["GOFLAGS"].replace("-mod=readonly", "-mod=mod")
    if "-mod=" not in env["GOFLAGS"]:
        env["GOFLAGS"] += " -mod=mod"
    env.setdefault("GOTOOLCHAIN", "local")
    env.update(extra)
    return env


def go_mod_download(module: str, version: str, *, log: Path, cwd: Path) -> dict[str, Any]:
    """``go mod download -json module@version`` -> its JSON (Dir, GoMod, Version, Origin...)."""
    out = run_step(
        [go_binary(), "mod", "download", "-json", f"{module}@{version}"],
        log=log,
        cwd=cwd,
        env=go_env(),
        step=f"download {module}@{version}",
    )
    start = out.find("{")
    info = json.loads(out[start:]) if start >= 0 else {}
    if info.get("Error"):
        raise ObtainError(f"go mod download {module}@{version}: {info['Error']}; log: {log}")
    return info


_DIRECTIVE_BLOCK = re.compile(r"^(replace|exclude)\s*\(\s*\n(.*?)^\)", re.S | re.M)
_DIRECTIVE_LINE = re.compile(r"^(replace|exclude)\s+([^(\s].*)$", re.M)


def replace_exclude_lines(gomod_text: str) -> list[str]:
    """The ``replace``/``exclude`` directives of a go.mod, one directive per returned line.

    Replacements by a local path (``=> ./x``, ``=> ../x``) are dropped: they point into the upstream
    repository's tree, which a wrapper module does not have.
    """
    items: list[tuple[str, str]] = []
    for m in _DIRECTIVE_BLOCK.finditer(gomod_text):
        for line in m.group(2).splitlines():
            line = line.split("//", 1)[0].strip()
            if line:
                items.append((m.group(1), line))
    for m in _DIRECTIVE_LINE.finditer(gomod_text):
        items.append((m.group(1), m.group(2).split("//", 1)[0].strip()))
    out = []
    for kind, body in items:
        if kind == "replace" and re.search(r"=>\s*\.{1,2}/", body):
            continue
        out.append(f"{kind} {body}")
    return out


def wrapper_module(tmp: Path, name: str, module: str, version: str, log: Path) -> tuple[Path, dict[str, Any]]:
    """Create a wrapper module in ``tmp/src`` that carries ``module@version``'s replace/exclude lines."""
    src = tmp / "src"
    src.mkdir()
    run_step(
        [go_binary(), "mod", "init", f"o11ybox.local/{name}-wrapper"],
        log=log,
        cwd=src,
        env=go_env(),
        step="go mod init (wrapper module)",
    )
    info = go_mod_download(module, version, log=log, cwd=src)
    upstream = Path(info["GoMod"]).read_text()
    directives = replace_exclude_lines(upstream)
    with (src / "go.mod").open("a") as fh:
        fh.write(f"\n// copied from {module}@{info.get('Version', version)} go.mod\n")
        fh.write("\n".join(directives) + "\n")
    with log.open("a") as fh:
        fh.write(f"### directives copied from {module}@{version} go.mod:\n" + "\n".join(directives) + "\n")
    say(f"  copied {len(directives)} replace/exclude directive(s) from {module} go.mod")
    return src, info
