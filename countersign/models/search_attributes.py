"""Countersign's custom search attributes, filtered on by the Web UI, the CLI and the inbox."""

from temporalio.common import SearchAttributeKey

STATE = SearchAttributeKey.for_keyword("CountersignState")
REQUEST_TYPE = SearchAttributeKey.for_keyword("CountersignType")
AWAITING_ROLE = SearchAttributeKey.for_keyword("CountersignAwaitingRole")
REQUESTER = SearchAttributeKey.for_keyword("CountersignRequester")
TENANT = SearchAttributeKey.for_keyword("CountersignTenant")
AMOUNT = SearchAttributeKey.for_float("CountersignAmount")
# When the waiting step's SLA ends; the inbox sorts by it, most urgent first.
SLA_DUE = SearchAttributeKey.for_datetime("CountersignSlaDue")

# Who may decide the waiting step now: its roles (plus the escalation role once escalated) and
# `principal:<id>` for a named assignee. The inbox matches on it; AWAITING_ROLE stays the step's role.
DECIDERS = SearchAttributeKey.for_keyword_list("CountersignDeciders")

# Who has acted on the workflow (decided, stood in for someone, edited): besides the requester and those
# who may decide now, the people a non-privileged reader's list shows it to.
PARTICIPANTS = SearchAttributeKey.for_keyword_list("CountersignParticipants")

ALL = (STATE, REQUEST_TYPE, AWAITING_ROLE, REQUESTER, TENANT, AMOUNT, SLA_DUE, DECIDERS, PARTICIPANTS)


def principal_decider(principal_id: str) -> str:
    return f"principal:{principal_id}"
