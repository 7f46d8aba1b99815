"""Verifying the chains: one pass over the rows in (workflow_id, seq) order, against the seal and the
anchors, naming each broken chain's first bad (or missing) event.
"""

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from countersign.models.audit import AnchoredHead, ChainBreak, StoredAuditEvent, VerifyReport
from countersign.security.audit_keys import AuditKeyring
from countersign.store.audit_anchors import Anchored
from countersign.store.audit_links import chain_link, same_link
from countersign.store.audit_tables import from_row, utc_text


@dataclass
class _Chain:
    workflow_id: str
    expected: int = 0  # the next seq
    prev: str = ""  # the last link read
    keyed: bool = False  # a keyed link was read: no legacy one may follow
    legacy: bool = False
    problem: tuple[int, str] | None = None  # its first bad link, from the chain itself
    anchor_problem: tuple[int, str] | None = None  # its first event an anchor disagrees with


class ChainVerifier:
    """Reads rows in (workflow_id, seq) order and checks each chain as it goes: memory holds the
    anchors and the seal, never the log."""

    def __init__(self, keyring: AuditKeyring, seal: dict[str, tuple[int, str]], anchored: Anchored) -> None:
        self.report = VerifyReport(chains=0, events=0)
        self.heads: dict[str, AnchoredHead] = {}  # every intact chain's last event: what anchors hold
        self._keyring, self._seal, self._anchored = keyring, dict(seal), anchored
        self._chain: _Chain | None = None

    def feed(self, row: sa.Row[Any]) -> None:
        chain = self._chain
        if chain is None or chain.workflow_id != row.workflow_id:
            self._end(chain)
            chain = self._chain = _Chain(row.workflow_id)
            self.report.chains += 1
        self.report.events += 1
        if row.key_id is None and not chain.legacy:
            chain.legacy = True
            self.report.legacy_chains += 1
        anchored = self._anchored.get(chain.workflow_id, {}).get(row.seq, {})
        differing = [label for link, label in anchored.items() if link != row.hash]
        if differing and chain.anchor_problem is None:
            chain.anchor_problem = (
                row.seq,
                f"event {row.seq} is not the one {differing[0]} holds: its link differs, so it was "
                "rewritten after that anchor",
            )
        if chain.problem is None:
            chain.problem = self._check(chain, row)
        chain.expected, chain.prev = row.seq + 1, row.hash
        chain.keyed |= row.key_id is not None

    def finish(self) -> VerifyReport:
        self._end(self._chain)
        self._chain = None
        # What the seal or an anchor holds, and the log no longer has at all: deleted chains.
        for chain in sorted(self._seal.keys() | self._anchored.keys()):
            if chain in self._anchored:
                top = max(self._anchored[chain])
                holder = next(iter(self._anchored[chain][top].values()))
            else:
                top, holder = self._seal[chain][0], "the legacy seal"
            reason = f"chain deleted: {holder} holds it up to seq {top}, but none of its events is stored"
            self.report.broken.append(ChainBreak(workflow_id=chain, seq=0, reason=reason))
        return self.report

    def _end(self, chain: _Chain | None) -> None:
        if chain is None:
            return
        top = chain.expected - 1
        problems = [p for p in (chain.problem, chain.anchor_problem) if p is not None]
        sealed = self._seal.pop(chain.workflow_id, None)
        if sealed is not None and top < sealed[0]:
            problems.append(
                (
                    top + 1,
                    f"chain truncated: the legacy seal holds it up to seq {sealed[0]}, "
                    f"the log ends at seq {top}",
                )
            )
        anchored = self._anchored.pop(chain.workflow_id, {})
        beyond = max((seq for seq in anchored if seq > top), default=None)
        if beyond is not None:
            holder = next(iter(anchored[beyond].values()))
            problems.append(
                (top + 1, f"chain truncated: {holder} holds it up to seq {beyond}, the log ends at seq {top}")
            )
        if problems:
            seq, reason = min(problems, key=lambda problem: problem[0])
            self.report.broken.append(ChainBreak(workflow_id=chain.workflow_id, seq=seq, reason=reason))
        else:
            self.heads[chain.workflow_id] = AnchoredHead(seq=top, link=chain.prev)

    def _check(self, chain: _Chain, row: sa.Row[Any]) -> tuple[int, str] | None:
        """Why this row is not the valid next link of its chain, as (first bad seq, reason), or None."""
        if row.seq != chain.expected:
            return chain.expected, f"event {chain.expected} is missing (the next stored is {row.seq})"
        try:
            event = from_row(row)
        except ValueError as error:  # pydantic's ValidationError and json's JSONDecodeError both are
            return row.seq, f"unreadable row: {error}".splitlines()[0]
        if event.prev_hash != chain.prev:
            return row.seq, "prev_hash is not the previous event's hash"
        problem = self._legacy(chain, event) if event.key_id is None else self._keyed(event)
        if problem is not None:
            return row.seq, problem
        if row.at_utc != utc_text(event.at):  # the link covers `at`, not its search copy
            return row.seq, "at_utc does not match at"
        return None

    def _legacy(self, chain: _Chain, event: StoredAuditEvent) -> str | None:
        downgraded = "made without the key (a keyed link recomputed as plain SHA-256?)"
        if chain.keyed:
            return f"a legacy (unkeyed) link after keyed ones: {downgraded}"
        sealed = self._seal.get(event.workflow_id)
        if sealed is None:
            return f"a legacy (unkeyed) link in a chain the legacy seal does not hold: {downgraded}"
        if event.seq > sealed[0]:
            return (
                f"a legacy (unkeyed) link past seq {sealed[0]}, where the legacy seal ends them: {downgraded}"
            )
        if not same_link(chain_link(event, self._keyring), event.hash):
            return "content does not match its hash: changed after it was written"
        if event.seq == sealed[0] and not same_link(event.hash, sealed[1]):
            return "not the legacy link the legacy seal holds for this seq: the chain was rewritten"
        return None

    def _keyed(self, event: StoredAuditEvent) -> str | None:
        sealed = self._seal.get(event.workflow_id)
        if sealed is not None and event.seq <= sealed[0]:
            return f"a keyed link where the legacy seal holds legacy ones (up to seq {sealed[0]})"
        if event.key_id not in self._keyring.keys:
            return f"linked with audit key {event.key_id!r}, which the keyring lacks: cannot be checked"
        if not same_link(chain_link(event, self._keyring), event.hash):
            return (
                f"content does not match its link under audit key {event.key_id!r}: changed after it "
                "was written, or recomputed without the key"
            )
        return None
