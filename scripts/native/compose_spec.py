"""The subset of the compose spec this project's files use, for when no Compose binary is at hand:
`.env` files, interpolation, override files (merge, ``!reset``, ``!override``) and the long syntax
of volumes, ports, environment and depends_on. compose_model.py builds its model from the result."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class ComposeError(RuntimeError):
    pass


def load_normalised(project_dir: Path, files: Sequence[Path], variables: Mapping[str, str]) -> dict[str, Any]:
    """``files`` merged in order, interpolated with ``variables`` and normalised to the shape
    `docker-compose config --format json` prints."""
    raw: dict[str, Any] = {}
    for path in files:
        layer = yaml.load(path.read_text(), Loader=ComposeLoader) or {}
        raw = merge_layers(raw, layer)
    return _normalise(project_dir, _interpolate_tree(_strip_tags(raw), variables))


# --- override files (compose spec "merge": the subset this project uses) -------------------------
class _Reset:
    """``!reset`` in an override: the key is removed from the merged service."""


@dataclass(frozen=True)
class _Override:
    """``!override`` in an override: the value replaces the base's instead of merging with it."""

    value: Any


class ComposeLoader(yaml.SafeLoader):
    pass


def _construct_reset(loader: yaml.SafeLoader, node: yaml.Node) -> _Reset:
    return _Reset()


def _construct_override(loader: yaml.SafeLoader, node: yaml.Node) -> _Override:
    if isinstance(node, yaml.MappingNode):
        return _Override(loader.construct_mapping(node, deep=True))
    if isinstance(node, yaml.SequenceNode):
        return _Override(loader.construct_sequence(node, deep=True))
    return _Override(loader.construct_scalar(node))  # type: ignore[arg-type]


ComposeLoader.add_constructor("!reset", _construct_reset)
ComposeLoader.add_constructor("!override", _construct_override)

# Sequences an override replaces rather than extends (compose spec: command, entrypoint and a
# healthcheck's test are replaced; other sequences are merged).
_REPLACED_SEQUENCES = {"command", "entrypoint", "test"}


def merge_layers(base: Any, layer: Any, key: str = "") -> Any:
    """Merge one compose file over another as compose does for the keys this project uses:
    mappings key by key, ``!reset`` removes, ``!override`` replaces, command/entrypoint/test are
    replaced, other sequences keep the base's items and add the layer's new ones."""
    if isinstance(layer, _Override):
        return layer.value
    if isinstance(base, dict) and isinstance(layer, dict):
        out = dict(base)
        for k, v in layer.items():
            if isinstance(v, _Reset):
                out.pop(k, None)
            elif k in out:
                out[k] = merge_layers(out[k], v, k)
            else:
                out[k] = _strip_tags(v)
        return out
    if isinstance(base, list) and isinstance(layer, list) and key not in _REPLACED_SEQUENCES:
        return [*base, *(x for x in layer if x not in base)]
    return _strip_tags(layer)


def _strip_tags(node: Any) -> Any:
    if isinstance(node, _Override):
        return _strip_tags(node.value)
    if isinstance(node, dict):
        return {k: _strip_tags(v) for k, v in node.items() if not isinstance(v, _Reset)}
    if isinstance(node, list):
        return [_strip_tags(x) for x in node]
    return node


_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")


def read_env_file(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    if not path.is_file():  # .env is optional for compose: defaults live in compose.yaml
        return out
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _ENV_LINE.match(line)
        if not m:
            raise ComposeError(f"{path}: cannot parse line {line!r}")
        key, value = m.group(1), m.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        else:
            value = re.sub(r"\s+#.*$", "", value)  # inline comment after an unquoted value
        out[key] = value
    return out


def interpolate(text: str, variables: Mapping[str, str]) -> str:
    """Compose-spec interpolation: $VAR ${VAR} ${VAR:-d} ${VAR-d} ${VAR:?e} ${VAR?e} ${VAR:+a} ${VAR+a} $$."""
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c != "$":
            out.append(c)
            i += 1
            continue
        if i + 1 < n and text[i + 1] == "$":
            out.append("$")
            i += 2
            continue
        if i + 1 < n and text[i + 1] == "{":
            depth, j = 1, i + 2
            while j < n and depth:
                if text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                j += 1
            if depth:
                raise ComposeError(f"unterminated ${{ in {text!r}")
            out.append(_expand(text[i + 2 : j - 1], variables))
            i = j
            continue
        m = re.match(r"[A-Za-z_][A-Za-z0-9_]*", text[i + 1 :])
        if m:
            out.append(variables.get(m.group(0), ""))
            i += 1 + m.end(0)
            continue
        out.append("$")
        i += 1
    return "".join(out)


def _expand(expr: str, variables: Mapping[str, str]) -> str:
    m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?$", expr, re.S)
    if not m:
        raise ComposeError(f"bad interpolation ${{{expr}}}")
    name, op, arg = m.group(1), m.group(2), m.group(3) or ""
    value = variables.get(name)
    if op is None:
        return value or ""
    empty_counts = op.startswith(":")
    is_set = value is not None and (value != "" or not empty_counts)
    kind = op[-1]
    if kind == "-":
        return value if is_set else interpolate(arg, variables)  # type: ignore[return-value]
    if kind == "+":
        return interpolate(arg, variables) if is_set else ""
    if not is_set:  # "?"
        raise ComposeError(f"required variable {name} is missing: {interpolate(arg, variables)}")
    return value  # type: ignore[return-value]


def _interpolate_tree(node: Any, variables: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, variables)
    if isinstance(node, list):
        return [_interpolate_tree(x, variables) for x in node]
    if isinstance(node, dict):
        return {k: _interpolate_tree(v, variables) for k, v in node.items()}
    return node


def _normalise(project_dir: Path, data: dict[str, Any]) -> dict[str, Any]:
    """Bring the fallback's data into the shape `docker-compose config --format json` prints."""
    services: dict[str, Any] = {}
    for name, svc in (data.get("services") or {}).items():
        svc = dict(svc or {})
        for key in ("command", "entrypoint"):
            if isinstance(svc.get(key), str):
                import shlex

                svc[key] = shlex.split(svc[key])
        env = svc.get("environment") or {}
        if isinstance(env, list):
            env = dict(e.split("=", 1) if "=" in e else (e, None) for e in env)
        svc["environment"] = {k: (None if v is None else _scalar(v)) for k, v in env.items()}
        svc["volumes"] = [_long_volume(project_dir, v) for v in svc.get("volumes") or []]
        ports: list[dict[str, Any]] = []
        for p in svc.get("ports") or []:
            ports.extend(_long_ports(p))
        svc["ports"] = ports
        deps = svc.get("depends_on") or {}
        if isinstance(deps, list):
            deps = {d: {"condition": "service_started"} for d in deps}
        svc["depends_on"] = deps
        services[name] = svc
    return {**data, "services": services}


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _long_volume(project_dir: Path, v: Any) -> dict[str, Any]:
    if isinstance(v, dict):
        out = dict(v)
        if out.get("type") == "bind" and out.get("source"):
            out["source"] = str((project_dir / os.path.expanduser(out["source"])).resolve())
        return out
    parts = str(v).split(":")
    if len(parts) == 1:
        return {"type": "volume", "target": parts[0]}
    source, target = parts[0], parts[1]
    mode = parts[2] if len(parts) > 2 else "rw"
    ro = "ro" in mode.split(",")
    if source.startswith((".", "/", "~")):
        return {
            "type": "bind",
            "source": str((project_dir / os.path.expanduser(source)).resolve()),
            "target": target,
            "read_only": ro,
        }
    return {"type": "volume", "source": source, "target": target, "read_only": ro}


def _long_ports(p: Any) -> list[dict[str, Any]]:
    if isinstance(p, dict):
        return [p]
    s = str(p)
    proto = "tcp"
    if "/" in s:
        s, proto = s.split("/", 1)
    parts = s.rsplit(":", 2)
    if len(parts) == 3:
        ip, pub, tgt = parts
    elif len(parts) == 2:
        ip, (pub, tgt) = "", parts
    else:
        ip, pub, tgt = "", "", parts[0]
    return [{"host_ip": ip, "published": pub or tgt, "target": int(tgt), "protocol": proto}]
