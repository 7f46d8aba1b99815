"""The one approval-step engine both workflows use: a request's chain (workflows/approval/) and a graph
run's approval nodes (workflows/graph/). One step model (`countersign.models.decisions.ApprovalStep`),
one wait
with its reminder, SLA escalation and deadline, one way a decision is applied (quorum, delegation,
segregation of duties), one notification path and one audit writer with one retry policy."""
