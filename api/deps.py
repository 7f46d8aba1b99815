"""Annotated dependencies shared by the routes."""

from typing import Annotated

from fastapi import Depends, Request
from temporalio.client import Client

from api.auth import current_principal
from countersign.approvals import ApprovalService
from countersign.audit_log import AuditLog
from countersign.graph_runs import GraphService
from countersign.principals import PrincipalStore
from models.principals import Principal


def _client(request: Request) -> Client:
    client: Client = request.app.state.client
    return client


def _service(request: Request) -> ApprovalService:
    service: ApprovalService = request.app.state.service
    return service


def _graphs(request: Request) -> GraphService:
    service: GraphService = request.app.state.graphs
    return service


def _principals(request: Request) -> PrincipalStore:
    store: PrincipalStore = request.app.state.principals
    return store


def _audit(request: Request) -> AuditLog:
    audit: AuditLog = request.app.state.audit
    return audit


ClientDep = Annotated[Client, Depends(_client)]
ServiceDep = Annotated[ApprovalService, Depends(_service)]
GraphServiceDep = Annotated[GraphService, Depends(_graphs)]
PrincipalDep = Annotated[Principal, Depends(current_principal)]
PrincipalStoreDep = Annotated[PrincipalStore, Depends(_principals)]
AuditLogDep = Annotated[AuditLog, Depends(_audit)]
