"""What an API key may do: its role.

Two kinds of key, kept apart on purpose so a key that leaks from an application's configuration
cannot change the gateway, and an operator's key is never pasted into an application:

- `app`: the data plane (`/v1/...`) only, limited to its routes. The default; every key made
  before roles existed is one.
- governance roles, for the admin API (`/admin/v1/...`) only, each allowed everything the ones
  before it are:

  viewer < reviewer < operator < deployer < admin

  viewer    reads routes, releases, evidence, diffs, traces and the audit log
  reviewer  also works the human review queue (approve / edit / reject / escalate)
  operator  also pauses, resumes and rolls back rollouts and throws the kill switch
  deployer  also registers releases and starts and promotes rollouts
  admin     also creates, lists and revokes API keys
"""

from __future__ import annotations

from enum import StrEnum

from lockgate.errors import PermissionDenied


class Role(StrEnum):
    APP = "app"
    VIEWER = "viewer"
    REVIEWER = "reviewer"
    OPERATOR = "operator"
    DEPLOYER = "deployer"
    ADMIN = "admin"

    @property
    def is_governance(self) -> bool:
        return self is not Role.APP

    def allows(self, needed: Role) -> bool:
        """True when a key of this role may do what `needed` may. An app key allows no governance role."""
        if not needed.is_governance:
            return self is Role.APP
        return self.is_governance and GOVERNANCE_ORDER.index(self) >= GOVERNANCE_ORDER.index(needed)


GOVERNANCE_ORDER: tuple[Role, ...] = (Role.VIEWER, Role.REVIEWER, Role.OPERATOR, Role.DEPLOYER, Role.ADMIN)

ROLE_DUTIES: dict[Role, str] = {
    Role.APP: "calls the data plane (/v1/...) on its routes; no admin API",
    Role.VIEWER: "reads routes, releases, evidence, diffs, traces and the audit log",
    Role.REVIEWER: "viewer, and works the review queue",
    Role.OPERATOR: "reviewer, and pauses/rolls back rollouts and throws the kill switch",
    Role.DEPLOYER: "operator, and registers releases and starts/promotes rollouts",
    Role.ADMIN: "deployer, and manages API keys",
}


def parse_role(text: str) -> Role:
    """The role named by `text`, or a ValueError that lists the valid names."""
    try:
        return Role(text.strip().lower())
    except ValueError:
        valid = ", ".join(r.value for r in Role)
        raise ValueError(f"unknown role '{text}'; use one of: {valid}") from None


def require_data_plane_key(role: str) -> None:
    """The data plane accepts app keys only; a governance key is told where it belongs."""
    if role != Role.APP:
        raise PermissionDenied(
            f"This is an admin API key (role '{role}'); it works on /admin/v1/ only, not on the data plane. "
            "Call /v1/ with an app key: `lockgate keys create --name NAME` (role app is the default).",
            code="admin_key_on_data_plane",
        )
