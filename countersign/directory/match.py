"""Matching names against a tenant's directory with rapidfuzz: pure functions over records.

Two questions, two rules:
- `lookup`: which record does this name mean? A clear best match answers; several close ones are an
  ambiguous answer listing every candidate, never one picked silently.
- `mentioned`: which records does this text name? A record's name or alias must appear in the text
  (nearly) whole; a short alias ("ABC") must appear as a word, exactly, or it would be found everywhere.
"""

import re
from collections.abc import Sequence
from typing import Any

from rapidfuzz import fuzz, utils

from countersign.models.directory import Budget, Counterparty, Lookup, Match, Person, Rate, Record

# A name this close (0 to 100) to a record's answers a lookup; a second record within AMBIGUOUS_GAP of
# the best makes the answer ambiguous.
ANSWER_SCORE = 85.0
AMBIGUOUS_GAP = 5.0
# A name or alias this close to a stretch of the text is a mention of its record.
MENTION_SCORE = 90.0
# Names and aliases shorter than this are mentioned only as exact whole words.
SHORT_NAME = 4
SEARCH_CUTOFF = 50.0
MAX_MATCHES = 10


def terms(record: Record) -> list[str]:
    """The strings a record is known by."""
    if isinstance(record, Counterparty):
        return [record.name, *record.aliases, *(record.vendor_id or "").split()]
    if isinstance(record, Person):
        return [record.name, *([record.email] if record.email else [])]
    if isinstance(record, Budget):
        return [record.cost_center]
    assert isinstance(record, Rate)
    return [record.currency]


def _score(query: str, record: Record, scorer: Any = fuzz.WRatio) -> float:
    processed = utils.default_process(query)
    if not processed:
        return 0.0
    return max(float(scorer(processed, utils.default_process(t))) for t in terms(record) if t.strip())


def _match(record: Record, score: float) -> Match:
    return Match(score=round(score, 1), record=record.model_dump(mode="json"))


def search(records: Sequence[Record], query: str, *, limit: int = MAX_MATCHES) -> list[Record]:
    """Records whose names resemble `query`, best first; every record when the query is blank."""
    if not query.strip():
        return list(records)[:limit]
    scored = [(s, i) for i, r in enumerate(records) if (s := _score(query, r)) >= SEARCH_CUTOFF]
    scored.sort(key=lambda pair: (-pair[0], pair[1]))
    return [records[i] for _, i in scored[:limit]]


def lookup(tool: str, records: Sequence[Record], query: str) -> Lookup:
    """The record `query` names: one, several candidates (ambiguous), or none. The whole name is
    compared (a typo is forgiven, a longer name is not: "Acme Corp" is not "Acme Supplies" for having
    "Acme" in common), where a search ranks by any resemblance."""
    query = query.strip()[:200]
    scored = sorted(
        ((s, i) for i, r in enumerate(records) if (s := _score(query, r, fuzz.ratio)) >= ANSWER_SCORE),
        key=lambda pair: (-pair[0], pair[1]),
    )[:MAX_MATCHES]
    if not scored:
        return Lookup(tool=tool, query=query)
    best = scored[0][0]
    close = [(s, i) for s, i in scored if best - s <= AMBIGUOUS_GAP]
    matches = [_match(records[i], s) for s, i in close]
    return Lookup(tool=tool, query=query, matches=matches, ambiguous=len(matches) > 1)


def _mention_score(text: str, term: str) -> float:
    processed = utils.default_process(term)
    if not processed:
        return 0.0
    if " " not in processed:
        # One word is a mention only as a whole word, and not as the first word of a longer name:
        # "Acme" is not mentioned by "Acme Corp", nor "Globex" by "Globex Corporation". Short ones
        # ("ABC") only as written, so that "abc" in ordinary text is not taken for them.
        flags = 0 if len(processed) < SHORT_NAME else re.IGNORECASE
        pattern = rf"(?<![\w-]){re.escape(term.strip())}(?![\w-])(?-i:(?!\s+[A-Z]))"
        return 100.0 if re.search(pattern, text, flags) else 0.0
    return float(fuzz.partial_ratio(processed, utils.default_process(text)))


def mentioned(tool: str, records: Sequence[Record], text: str) -> list[Lookup]:
    """One lookup per name the text mentions: clear when one record answers to it, ambiguous when
    several do (an alias two counterparties share). A name inside a longer mentioned name ("ABC
    Logistics" in "ABC Logistics Europe") is the longer one's."""
    found: dict[str, list[tuple[float, int]]] = {}
    for index, record in enumerate(records):
        best: tuple[float, str] | None = None
        for term in terms(record):
            score = _mention_score(text, term)
            if score >= MENTION_SCORE and (best is None or (score, len(term)) > (best[0], len(best[1]))):
                best = (score, term)
        if best is not None:
            found.setdefault(best[1].casefold(), []).append((best[0], index))
    names = sorted(found, key=len, reverse=True)
    kept = [n for n in names if not any(n != longer and n in longer for longer in names)]
    lookups = []
    for name in sorted(kept, key=lambda n: utils.default_process(text).find(utils.default_process(n))):
        hits = sorted(found[name], key=lambda pair: (-pair[0], pair[1]))[:MAX_MATCHES]
        matches = [_match(records[i], s) for s, i in hits]
        lookups.append(Lookup(tool=tool, query=name, matches=matches, ambiguous=len(matches) > 1))
    return lookups
