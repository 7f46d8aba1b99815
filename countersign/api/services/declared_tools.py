"""Tools a tenant's ADMIN declares (`POST /tools`), listed with the registered ones (`GET /tools`), and
`resolve`, which the submit path calls to freeze a declared tool into a workflow's input.

A declared tool is executed by the caller after approval, never by Countersign: what is declared here
is only what validation checks a call against and what the approval policy routes on. Its name may not
be a registered tool's, in any case, so that a reviewer reading `send_email` never reads a tenant's own.
"""

import hashlib
import json

from countersign.models.decisions import Refusal
from countersign.models.declared_tools import DeclaredTool, DeclareToolRequest
from countersign.models.enums import Role
from countersign.models.errors import Forbidden, Invalid, NotFound
from countersign.models.principals import Principal
from countersign.models.tools import ToolSpec
from countersign.store.admin_audit import AdminAudit
from countersign.store.declared_tools import DeclaredToolStore
from countersign.tools.declared import schema_problems
from countersign.tools.registry import ToolRegistry

EVENT = "tool_declared"


async def resolve(store: DeclaredToolStore, tenant: str, name: str) -> DeclaredTool | None:
    """The latest version of `tenant`'s declared tool `name`, or None when it declared none by that
    name. The caller freezes the answer into the workflow's input: it is the version the call is
    validated against, whatever is declared later."""
    return await store.latest(tenant, name)


def declared_spec(tool: DeclaredTool) -> ToolSpec:
    """How `GET /tools` shows a declared tool. Countersign does not run it, so it promises nothing
    about running it twice, nor about its result: the caller reports whatever it got."""
    return ToolSpec(
        name=tool.name,
        description=tool.description,
        side_effect=tool.side_effect,
        risk=tool.risk,
        idempotent=False,
        args_schema=tool.args_schema,
        result_schema={},
        execution="caller",
        version=tool.version,
    )


def schema_sha256(tool: DeclaredTool) -> str:
    canonical = json.dumps(tool.args_schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class DeclaredToolService:
    def __init__(self, store: DeclaredToolStore, registry: ToolRegistry, audit: AdminAudit) -> None:
        self._store = store
        self._registry = registry
        self._audit = audit

    def _problems(self, request: DeclareToolRequest) -> list[str]:
        registered = {name.lower(): name for name in self._registry.names()}
        if request.name.lower() in registered:
            return [
                f"name: {request.name!r} is the registered tool {registered[request.name.lower()]!r}; "
                "a declared tool needs a name of its own"
            ]
        return schema_problems(request.args_schema)

    async def declare(self, principal: Principal, request: DeclareToolRequest) -> ToolSpec:
        """Store the next version of the tool and audit it; a version whose audit event could not be
        written is removed again, so that no declaration is in use without its record."""
        if Role.ADMIN not in principal.roles:
            raise Forbidden("only an ADMIN may declare tools", Refusal.NOT_ALLOWED)
        problems = self._problems(request)
        if problems:
            raise Invalid("; ".join(problems), "ToolDeclarationInvalid")
        tool = await self._store.declare(request, tenant=principal.tenant, declared_by=principal.id)
        try:
            await self._audit.record(
                tool.tenant,
                EVENT,
                principal.id,
                f"{principal.name} declared tool {tool.name} version {tool.version}, executed by the caller",
                {
                    "tool": tool.name,
                    "version": tool.version,
                    "side_effect": tool.side_effect.value,
                    "risk": tool.risk.value,
                    "args_schema_sha256": schema_sha256(tool),
                },
                by=principal,
            )
        except Exception:
            await self._store.discard(tool.tenant, tool.name, tool.version)
            raise
        return declared_spec(tool)

    async def specs(self, principal: Principal) -> list[ToolSpec]:
        """The registered tools, then the latest version of each tool the caller's tenant declared."""
        declared = await self._store.visible(principal.tenant)
        return self._registry.specs() + [declared_spec(tool) for tool in declared]

    async def one(self, principal: Principal, name: str, version: int | None = None) -> ToolSpec:
        """A registered tool (which has no versions), or the tenant's declared tool: its latest version
        or `version`. Another tenant's tool is not found, exactly as one that does not exist."""
        if name in self._registry:
            if version is None:
                return self._registry.get(name).spec()
            raise NotFound(f"tool {name} is registered, not declared: it has no version {version}")
        tool = (
            await self._store.latest(principal.tenant, name)
            if version is None
            else await self._store.get(principal.tenant, name, version)
        )
        if tool is None:
            raise NotFound(f"no tool {name}" + (f" version {version}" if version is not None else ""))
        return declared_spec(tool)
