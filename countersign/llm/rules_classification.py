"""The rules planner's classification: which request type the words give evidence for."""

import re

from countersign.models.enums import RequestType
from countersign.models.proposal import RequestFields

# One pattern per specific type; each distinct match counts as one piece of evidence.
_TYPE_PATTERNS: dict[RequestType, re.Pattern[str]] = {
    RequestType.PROCUREMENT: re.compile(
        r"\b(?:buy(?:ing)?|purchas(?:e|es|ed|ing)|procure(?:ment)?|quot(?:e|es|ation)"
        r"|(?<!in )(?<!out of )order(?:s|ed|ing)?)\b",  # not "in order to", "out of order"
        re.IGNORECASE,
    ),
    RequestType.LEAVE: re.compile(
        r"\b(?:vacation|pto|(?<!public )(?<!bank )holidays?|sick|unwell|time off|parental|maternity|paternity"
        r"|(?:days?|weeks?|mornings?|afternoons?) off"
        r"|(?:take|taking|book|booking|have) (?:today|tomorrow|(?:mon|tues|wednes|thurs|fri)day) off"
        r"|leave\b(?!\s+(?:a|an|it|the|this|that|them|him|her|me|us|early|now"
        r"|feedback|comments?|notes?|messages?|word|instructions)\b))",
        # "leave a note" / "leave feedback" / "a public holiday" are not leave requests
        re.IGNORECASE,
    ),
    RequestType.SUPPORT: re.compile(
        r"\b(?:outages?|bugs?|tickets?|incidents?|errors?|crash(?:es|ed|ing)?|broken|not working"
        r"|out of order|data loss|fail(?:s|ed|ing|ures?)?|slow(?:ness)?|time[sd] out|timing out|timeouts?"
        r"|(?:is|are|went|goes) down|sev(?:erity)?\s*[:=#]?\s*[1-5]|p[0-4]"
        r"|customer (?:issue|complaint)s?|(?:can(?:no|')t|unable to) (?:log ?in|access|connect))\b",
        re.IGNORECASE,
    ),
}
# GENERAL is the catch-all: its own words never beat a specific type, they only add confidence.
_GENERAL_PATTERN = re.compile(
    r"\b(?:follow[- ]?up|follow|remind(?:er)?|e-?mail|contact|reach out|schedule|call|ask|send)\b",
    re.IGNORECASE,
)
# A money amount hints at procurement, but weakly: "losing $5k a day" is a support problem.
_MONEY_WEIGHT = 0.5


def classify(text: str, fields: RequestFields) -> tuple[RequestType, list[str]]:
    """Most evidence wins; ties go to the type listed first; no evidence at all means GENERAL."""
    best, best_score = RequestType.GENERAL, 0.0
    best_hits: list[str] = []
    for rtype, pattern in _TYPE_PATTERNS.items():
        hits = list(dict.fromkeys(m.group(0).lower() for m in pattern.finditer(text)))
        score = float(len(hits))
        if rtype is RequestType.PROCUREMENT and fields.amount is not None:
            hits.append("money amount")
            score += _MONEY_WEIGHT
        if score > best_score:
            best, best_score, best_hits = rtype, score, hits
    if best is RequestType.GENERAL:
        best_hits = list(dict.fromkeys(m.group(0).lower() for m in _GENERAL_PATTERN.finditer(text)))
    return best, best_hits
