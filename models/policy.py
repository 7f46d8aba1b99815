"""Approval policy as data: which roles must approve what, in which order, within what time."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from models.enums import RequestType, Role

DAY = 24 * 3600


class ChainRule(BaseModel):
    """When `request_type` matches and `field` exceeds `greater_than` (or `at_least`), use `roles`."""

    model_config = ConfigDict(extra="forbid")

    request_type: RequestType
    field: Literal["amount", "days", "severity"] | None = None
    greater_than: float | None = None
    at_least: float | None = None
    roles: list[Role] = Field(min_length=1)


class ApprovalPolicy(BaseModel):
    """Seed 001's default chains. The first matching rule wins; otherwise `default_roles`."""

    model_config = ConfigDict(extra="forbid")

    rules: list[ChainRule] = Field(
        default_factory=lambda: [
            ChainRule(
                request_type=RequestType.PROCUREMENT,
                field="amount",
                greater_than=10_000,
                roles=[Role.MANAGER, Role.FINANCE, Role.DIRECTOR],
            ),
            ChainRule(
                request_type=RequestType.LEAVE,
                field="days",
                greater_than=3,
                roles=[Role.MANAGER, Role.HR],
            ),
            ChainRule(
                request_type=RequestType.SUPPORT,
                field="severity",
                at_least=4,
                roles=[Role.SUPPORT_L2, Role.MANAGER],
            ),
        ]
    )
    default_roles: list[Role] = Field(default_factory=lambda: [Role.MANAGER], min_length=1)
    step_sla_seconds: int = Field(default=3 * DAY, ge=1)
    confidence_threshold: float = Field(default=0.6, ge=0, le=1)
    # A proposal below the threshold gets this role appended as an extra step, when set.
    low_confidence_role: Role | None = None
    # A tool whose effect leaves the organisation gets this role appended as an extra step, when set.
    external_effect_role: Role | None = None
