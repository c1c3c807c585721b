"""Release operations: the one implementation behind `lockgate release` and /admin/v1/releases.

Lookups raise `InvalidRequest` for a malformed release id and `NotFound` for a missing release, with
messages that say how to find the right one; a registration is validated against the configuration
the gateway serves and audited when it creates a release. Store errors (`StoreUnavailable`) pass
through for the caller to report.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from lockgate.auth.actor import Actor
from lockgate.config.schema import NAME_PATTERN, BackendFallback, LockgateConfig, ReleaseSpec
from lockgate.errors import InvalidRequest, NotFound
from lockgate.releases import parse_release_id
from lockgate.releases.diff import Change, diff_contents
from lockgate.store import ReleaseRecord, Store

MAX_VERSION = 2**63 - 1  # SQL's BIGINT: a larger number cannot be stored, so names no release


@dataclass(frozen=True)
class Registered:
    record: ReleaseRecord
    created: bool  # False: this content was already registered, and keeps its version


@dataclass(frozen=True)
class ListedRelease:
    record: ReleaseRecord
    serving: bool


@dataclass(frozen=True)
class ReleaseDiff:
    old: ReleaseRecord
    new: ReleaseRecord
    changes: list[Change]


def register_release(
    store: Store, config: LockgateConfig, actor: Actor, *, route: str, spec: ReleaseSpec, label: str
) -> Registered:
    """Gives `spec` its version on `route`: a new one for new content, the existing one otherwise."""
    if route not in config.routes:
        known = ", ".join(sorted(config.routes)) or "none"
        raise InvalidRequest(
            f"Route '{route}' is not declared in this gateway's configuration (routes: {known}). "
            "Declare it in lockgate.yaml first.", param="route"
        )
    if not re.match(NAME_PATTERN, label):
        raise InvalidRequest(
            f"'{label}' is not a valid label: use lowercase letters, digits, '.', '_' or '-' (e.g. `v3`).",
            param="label",
        )
    _check_backends(config, spec)
    content_hash = spec.content_hash()
    existed = any(r.content_hash == content_hash for r in store.list_releases(route))
    record = store.register_release(route, label, content_hash, spec.content())
    if not existed:
        store.append_audit(actor.name, "release.create", record.release_id,
                           {**actor.audit_details(), "label": label, "content_hash": content_hash})
    return Registered(record, created=not existed)


def register_declared_releases(
    store: Store, config: LockgateConfig, actor: Actor
) -> dict[str, dict[str, Registered]]:
    """Every release `lockgate.yaml` declares, by route and label."""
    return {
        route_name: {
            label: register_release(store, config, actor, route=route_name, spec=spec, label=label)
            for label, spec in route.releases.items()
        }
        for route_name, route in config.routes.items()
    }


def list_releases(store: Store, serving: Mapping[str, str], route: str | None = None) -> list[ListedRelease]:
    """Registered releases, oldest first; `serving` maps a route to the content hash it serves."""
    return [ListedRelease(r, is_serving(r, serving)) for r in store.list_releases(route)]


def is_serving(record: ReleaseRecord, serving: Mapping[str, str]) -> bool:
    return serving.get(record.route) == record.content_hash


def find_release(store: Store, release_id: str, *, param: str | None = None) -> ReleaseRecord:
    parsed = parse_release_id(release_id)
    if parsed is None:
        raise InvalidRequest(
            f"'{release_id}' is not a release id: use ROUTE@VERSION, e.g. support-bot@2.", param=param
        )
    record = store.get_release(*parsed) if parsed[1] <= MAX_VERSION else None
    if record is None:
        raise NotFound(
            f"No release {release_id}. List the registered ones with `lockgate release list --route {parsed[0]}` "
            f"or GET /admin/v1/releases?route={parsed[0]}."
        )
    return record


def diff_releases(store: Store, old_id: str, new_id: str, *, old_param: str | None = None) -> ReleaseDiff:
    old = find_release(store, old_id, param=old_param)
    new = find_release(store, new_id)
    return ReleaseDiff(old, new, diff_contents(old.content, new.content))


def _check_backends(config: LockgateConfig, spec: ReleaseSpec) -> None:
    """Every backend the release may call must be one the gateway has."""
    wanted = [("spec.backend", spec.backend)] + [
        (f"spec.fallbacks.{i}.backend", f.backend) for i, f in enumerate(spec.fallbacks)
        if isinstance(f, BackendFallback)
    ]
    for param, backend in wanted:
        if backend not in config.backends:
            known = ", ".join(sorted(config.backends)) or "none"
            raise InvalidRequest(
                f"{param}: backend '{backend}' is not declared in this gateway's configuration (backends: {known}). "
                "Use one of those, or declare the backend in lockgate.yaml first.", param=param
            )
