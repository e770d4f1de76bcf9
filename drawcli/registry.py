"""Finding and loading components through Python entry points.

Finding lists entry points (cheap, no imports, sorted); loading imports one and wraps any
failure in a `PluginError` naming the distribution and the entry point. Several names that
point at the same object are one component: the longest name is its name, the rest aliases
(so `filterbank` has the alias `attn`).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from drawcli.errors import DrawcliError, PluginError

GROUPS: dict[str, str] = {
    "reader": "drawcli.readers",
    "writer": "drawcli.writers",
    "sampler": "drawcli.samplers",
    "dataset": "drawcli.datasets",
}


@dataclass(frozen=True)
class PluginSpec:
    """One component as registered: its names, target and providing distribution."""

    kind: str
    name: str
    aliases: tuple[str, ...]
    value: str  # "module:attr"
    distribution: str | None
    version: str | None

    @property
    def group(self) -> str:
        return GROUPS[self.kind]

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)

    def describe(self) -> str:
        dist = f"{self.distribution} {self.version}" if self.distribution else "unknown distribution"
        return f"entry point {self.name!r} = {self.value!r} in group {self.group!r} ({dist})"


def _check_kind(kind: str) -> str:
    if kind not in GROUPS:
        raise ValueError(f"unknown component kind {kind!r}; expected one of {sorted(GROUPS)}")
    return GROUPS[kind]


def find(kind: str) -> list[PluginSpec]:
    """Every installed component of one kind, sorted by name, aliases folded in."""
    group = _check_kind(kind)
    by_target: dict[tuple[str | None, str], list[EntryPoint]] = {}
    seen: set[tuple[str, str]] = set()
    for ep in entry_points(group=group):
        if (ep.name, ep.value) in seen:  # the same distribution found twice on sys.path
            continue
        seen.add((ep.name, ep.value))
        dist = ep.dist.metadata["Name"] if ep.dist is not None else None
        by_target.setdefault((dist, ep.value), []).append(ep)
    specs = []
    for (dist_name, value), eps in by_target.items():
        names = sorted((ep.name for ep in eps), key=lambda n: (-len(n), n))
        first = eps[0].dist
        specs.append(
            PluginSpec(
                kind=kind,
                name=names[0],
                aliases=tuple(sorted(names[1:])),
                value=value,
                distribution=dist_name,
                version=first.version if first is not None else None,
            )
        )
    return sorted(specs, key=lambda s: s.name)


def names(kind: str) -> list[str]:
    """Every name (aliases included) a component of this kind can be asked for."""
    return sorted(n for spec in find(kind) for n in spec.names)


def resolve(kind: str, name: str) -> PluginSpec:
    """The component registered under `name` (or an alias); unknown names list the known ones."""
    matches = [spec for spec in find(kind) if name in spec.names]
    if not matches:
        known = ", ".join(names(kind)) or "none installed"
        raise PluginError(f"unknown {kind} {name!r}; installed {kind}s: {known}")
    if len(matches) > 1:
        who = "; ".join(spec.describe() for spec in matches)
        raise PluginError(f"{kind} name {name!r} is registered more than once: {who}")
    return matches[0]


def load(kind: str, name: str) -> Any:
    """Import and return the object behind a component name (a class, usually)."""
    spec = resolve(kind, name)
    ep = EntryPoint(name=spec.name, value=spec.value, group=spec.group)
    try:
        return ep.load()
    except Exception as exc:  # any failure inside third-party code becomes one clear error
        raise PluginError(
            f"{kind} {name!r} failed to load: {spec.describe()}: {type(exc).__name__}: {exc}"
        ) from exc


def build(kind: str, name: str, *args: Any, **kwargs: Any) -> Any:
    """Load a component and construct it, wrapping construction failures like load failures."""
    factory = load(kind, name)
    try:
        return factory(*args, **kwargs)
    except Exception as exc:
        if isinstance(exc, DrawcliError):
            raise
        spec = resolve(kind, name)
        raise PluginError(f"{kind} {name!r} could not be built ({spec.describe()}): {exc}") from exc
