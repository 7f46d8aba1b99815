"""Anchors read back for `verify`: checking each one's signature, and indexing what they hold.

An anchor is a signed record of every chain's last seq and link, kept outside the database; it shows
what links alone cannot: a chain's last rows, or a whole chain, deleted.
"""

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from pydantic import ValidationError

from countersign.models.audit import AuditAnchor, LogProblem
from countersign.security.audit_keys import AuditKeyring
from countersign.store.audit_links import canonical_json


@dataclass
class Anchors:
    """Anchors read back for `verify`: those whose signature holds, and what is wrong with the rest."""

    valid: list[tuple[str, AuditAnchor]] = field(default_factory=list)  # (how to name it, the anchor)
    problems: list[LogProblem] = field(default_factory=list)

    @classmethod
    def read(cls, lines: Iterable[str], keyring: AuditKeyring, source: str = "anchors") -> "Anchors":
        """One anchor per non-blank line, as `anchor_line` writes them."""
        anchors = cls()
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"anchor at line {number} of {source}"
            try:
                raw = json.loads(line)
                anchor = AuditAnchor.model_validate_json(line)  # strict, and no field it does not know
            except ValidationError as error:
                first = error.errors()[0]
                place = ".".join(str(part) for part in first["loc"])
                reason = f"not an anchor: {place + ': ' if place else ''}{first['msg']}"
                anchors.problems.append(LogProblem(where=where, reason=reason))
                continue
            except ValueError as error:  # json's JSONDecodeError
                anchors.problems.append(LogProblem(where=where, reason=f"not JSON: {error}"))
                continue
            # Checked over the JSON as written, not as parsed: any change to a value breaks it.
            signed = canonical_json({k: v for k, v in raw.items() if k != "signature"})
            why = keyring.verify_anchor(anchor.key_id, anchor.public_key, signed, anchor.signature)
            if why is not None:
                anchors.problems.append(LogProblem(where=where, reason=why))
                continue
            anchors.valid.append((f"the anchor of {anchor.at} (line {number} of {source})", anchor))
        return anchors


# What the anchors hold, by chain and seq: {link: the first anchor that names it there}.
Anchored = dict[str, dict[int, dict[str, str]]]


def anchored_heads(anchors: Anchors | None, workflow_id: str | None) -> Anchored:
    # Consecutive anchors mostly repeat finished chains: kept once per (chain, seq, link).
    anchored: Anchored = {}
    for label, anchor in anchors.valid if anchors else []:
        for chain, head in anchor.chains.items():
            if workflow_id is None or chain == workflow_id:
                anchored.setdefault(chain, {}).setdefault(head.seq, {}).setdefault(head.link, label)
    return anchored
