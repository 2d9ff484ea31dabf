"""One registry mechanism for every plugin kind.

A plugin is one file with a decorator::

    from harness.registry import ATTACKS

    @ATTACKS.register("prune")
    class GlobalL1Prune(Attack):
        '''Global L1 unstructured pruning of every Conv/Linear weight.'''

The first line of the docstring is the plugin's one-line description.

Built-in plugins live in fixed packages (``attacks/``, ``watermarks/``, ...).
Those packages are imported the first time a registry is asked for a name, so
adding a file is all it takes. Third-party packages add plugins through the
entry-point group ``harness.<kind>`` (e.g. ``harness.attacks``) with a value
``"module:attr"``; such entries stay unimported until they are looked up.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import pkgutil
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Callable, Iterable

from harness.errors import HarnessError, UnknownNameError


@dataclass
class _Entry:
    obj: Any = None
    lazy: str | None = None  # "module:attr", resolved on first get()
    description: str = ""


def _first_line(obj: Any) -> str:
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.splitlines()[0].strip() if doc else ""


class Registry:
    """Named plugins of one kind (e.g. ``attacks``).

    >>> reg = Registry("gadgets", packages=())
    >>> @reg.register("spanner")
    ... def make_spanner():
    ...     '''A tool for nuts.'''
    ...     return "spanner"
    >>> reg.get("spanner")()
    'spanner'
    >>> reg.names()
    ['spanner']
    >>> reg.get("spaner")
    Traceback (most recent call last):
    ...
    harness.errors.UnknownNameError: unknown gadget 'spaner'; did you mean 'spanner'? Valid gadgets: spanner
    """

    def __init__(self, kind: str, packages: Iterable[str]):
        self.kind = kind
        self._packages = tuple(packages)
        self._entries: dict[str, _Entry] = {}
        self._discovered = False

    # -- registration -----------------------------------------------------
    def register(self, name: str | None = None, *, description: str | None = None) -> Callable:
        """Decorator: register a class or factory under ``name`` (default: its own name)."""

        def decorator(obj: Any) -> Any:
            key = name or obj.__name__
            self._add(key, _Entry(obj=obj, description=description or _first_line(obj)))
            obj.registered_name = key
            return obj

        return decorator

    def register_lazy(self, name: str, target: str, description: str = "") -> None:
        """Register ``"module:attr"`` without importing it (used for entry points)."""
        if ":" not in target:
            raise ValueError(f"lazy {self.kind} entry {name!r} must be 'module:attr', got {target!r}")
        self._add(name, _Entry(lazy=target, description=description))

    def _add(self, name: str, entry: _Entry) -> None:
        existing = self._entries.get(name)
        if existing is not None:
            where = existing.lazy or getattr(existing.obj, "__module__", "?")
            raise ValueError(f"{self.kind} name {name!r} is already registered (by {where})")
        self._entries[name] = entry

    # -- discovery ----------------------------------------------------------
    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        for package in self._packages:
            pkg = importlib.import_module(package)
            for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
                if not info.name.startswith("_"):
                    importlib.import_module(f"{package}.{info.name}")
        for ep in entry_points(group=f"harness.{self.kind}"):
            if ep.name not in self._entries:
                self.register_lazy(ep.name, ep.value, description=f"(plugin from {ep.value})")

    # -- lookup -------------------------------------------------------------
    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a shell-style wildcard, sorted."""
        self._discover()
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def __contains__(self, name: str) -> bool:
        self._discover()
        return name in self._entries

    def get(self, name: str) -> Any:
        """The registered object; an unknown name raises with the closest names."""
        self._discover()
        entry = self._entries.get(name)
        if entry is None:
            raise UnknownNameError(self.unknown_message(name))
        if entry.obj is None:
            module_name, attr = entry.lazy.split(":", 1)
            try:
                entry.obj = getattr(importlib.import_module(module_name), attr)
            except (ImportError, AttributeError) as exc:
                raise HarnessError(f"{self.kind} plugin {name!r} ({entry.lazy}) cannot be loaded: {exc}") from None
            entry.description = _first_line(entry.obj) or entry.description
        return entry.obj

    def unknown_message(self, name: str) -> str:
        singular = self.kind[:-1] if self.kind.endswith("s") else self.kind
        return unknown_name_message(name, self.names(), singular, self.kind)

    def describe(self) -> list[tuple[str, str]]:
        """(name, one-line description) for every plugin, for ``harness list``."""
        return [(n, self._entries[n].description) for n in self.names()]


WATERMARKS = Registry("watermarks", packages=["watermarks"])
BASELINES = Registry("baselines", packages=["baselines"])
FINGERPRINTS = Registry("fingerprints", packages=["fingerprints"])
ATTACKS = Registry("attacks", packages=["attacks"])
MODELS = Registry("models", packages=["harness.models"])
DATASETS = Registry("datasets", packages=["harness.datasets"])
EXPLAINERS = Registry("explainers", packages=["harness.explainers"])
TRIGGERS = Registry("triggers", packages=["harness.triggers"])

ALL_REGISTRIES = {r.kind: r for r in (WATERMARKS, BASELINES, FINGERPRINTS, ATTACKS, EXPLAINERS, MODELS, DATASETS, TRIGGERS)}


SCHEME_REGISTRIES = (WATERMARKS, BASELINES, FINGERPRINTS)  # what ``--watermark`` names


def scheme_names() -> list[str]:
    """Every watermark, baseline and fingerprint, in that order."""
    return [n for registry in SCHEME_REGISTRIES for n in registry.names()]


def find_watermark(name: str) -> Any:
    """A watermark under test, a baseline or a fingerprint: ``--watermark`` accepts any of them."""
    for registry in SCHEME_REGISTRIES:
        if name in registry:
            return registry.get(name)
    raise UnknownNameError(unknown_name_message(name, scheme_names(), "watermark",
                                                "watermarks, baselines and fingerprints"))


def plugin_version(obj: Any) -> int:
    """A plugin's recipe version (its class attribute ``version``, default 1). Bump it when a change
    alters the numbers: it is part of every run id and cache key, so stale results are not reused."""
    return int(getattr(obj, "version", 1))


# -- names on the command line ------------------------------------------------------------------


def unknown_name_message(name: str, valid: Iterable[str], what: str, plural: str | None = None) -> str:
    """The one wording of every "unknown name" error: the closest matches, then every valid name.

    >>> unknown_name_message("prun", ["prune", "ftal"], "attack")
    "unknown attack 'prun'; did you mean 'prune'? Valid attacks: prune, ftal"
    """
    valid = list(valid)
    close = difflib.get_close_matches(str(name), valid, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return f"unknown {what} {name!r}{hint} Valid {plural or what + 's'}: {', '.join(valid) or '(none)'}"


def look_up(name: str, options: dict, what: str):
    """``options[name]``, or a one-line error naming the closest option and all valid ones (MONAI's
    ``look_up_option``) for fixed vocabularies that are not registries: presets, executors, kinds."""
    if name in options:
        return options[name]
    raise HarnessError(unknown_name_message(name, options, what))


def split_names(text: str, registry: Registry, what: str) -> list[str]:
    """``a,b`` or ``all`` -> registered names, each checked, none twice."""
    names = registry.names() if text == "all" else [n.strip() for n in str(text).split(",") if n.strip()]
    if not names:
        raise HarnessError(f"no {what} given")
    if len(set(names)) != len(names):
        raise HarnessError(f"{what} listed twice: {text}")
    return names


def resolve_explainers(text: str) -> list[str]:
    """``--explainer``: a name, a comma-separated list of names, or ``all``."""
    names = split_names(text, EXPLAINERS, "explainer")
    for name in names:
        EXPLAINERS.get(name)
    return names


def make_attack(label: str) -> Any:
    """The configured attack a leaderboard ``attack`` label names: a registered name, or a chain's
    steps joined by '+' (``prune.l1_50+ftal.e5``)."""
    if "+" in label:
        return ATTACKS.get("chain")(steps=label)
    return ATTACKS.get(label)()


def resolve_attacks(text: str, strengths=None) -> list[tuple[Any, tuple[float, ...]]]:
    """``--attack``: a name, ``name.preset`` (e.g. ``prune.l1_50``), a chain (``prune.l1_50+ftal.e5``),
    a comma-separated list, or ``all``.

    Returns (configured attack, strengths) pairs. Explicit ``strengths`` apply to plain names
    only: presets, chains and ``all`` carry their own.
    """
    names = split_names(text, ATTACKS, "attack")
    if strengths and (text == "all" or any("." in n or "+" in n for n in names)):
        raise HarnessError("--strength cannot be combined with --attack all, a named preset or a chain: "
                           "each attack has its own unit and sweep")
    resolved = []
    for name in names:
        if "+" in name:
            chain = make_attack(name)
            resolved.append((chain, chain.default_strengths))
            continue
        base, _, preset = name.partition(".")
        attack = ATTACKS.get(base)()
        if preset:
            if preset not in attack.presets:
                valid = ", ".join(f"{base}.{p}" for p in attack.presets) or "(none)"
                raise HarnessError(f"unknown preset {name!r}; presets of {base!r}: {valid}")
            chosen = (attack.presets[preset],)
        else:
            chosen = tuple(strengths or attack.default_strengths)
        if not chosen:
            raise HarnessError(f"attack {base!r} has no default strengths; pass --strength")
        resolved.append((attack, tuple(attack.check_strength(x) for x in chosen)))
    return resolved
