"""Offline deterministic planner: keywords and regular expressions, no network, no randomness.

It makes the whole system runnable without a model provider (tests, demos, air-gapped installs) and
serves as a baseline a model-backed planner must beat. Every choice it makes is written into the
plan's rationale, so an approver can see exactly which words led to the proposal.
"""

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from pydantic import EmailStr, TypeAdapter, ValidationError

from models.enums import RequestType
from models.proposal import Plan, PlanInput, RequestFields
from models.tools import ToolSpec

# --- classification -------------------------------------------------------------------------

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

# --- field extraction -----------------------------------------------------------------------

_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_SCALE = r"k|m|bn|thousand|million|billion"
_MONEY = re.compile(
    rf"(?P<sym>[$€£])\s?(?P<n1>{_NUM})(?:\s?(?P<s1>{_SCALE})\b)?"
    rf"|\b(?P<code1>USD|EUR|GBP)\s?(?P<n2>{_NUM})(?:\s?(?P<s2>{_SCALE})\b)?"
    rf"|\b(?P<n3>{_NUM})(?:\s?(?P<s3>{_SCALE}))?\s?(?P<code2>USD|EUR|GBP|dollars?|euros?)\b"
    rf"|\b(?P<n4>{_NUM})(?P<s4>k|m|bn)\b",  # bare "52k" / "1.2m": the suffix marks it as money
    re.IGNORECASE,
)
_SCALES = {"k": 1e3, "thousand": 1e3, "m": 1e6, "million": 1e6, "bn": 1e9, "billion": 1e9}
_CURRENCIES = {"$": "USD", "€": "EUR", "£": "GBP", "dollar": "USD", "euro": "EUR"}

_NUMBER_WORDS = (
    "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
    "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
    "twenty",
)  # fmt: skip
_WORD_NUMBERS = {word: i + 1 for i, word in enumerate(_NUMBER_WORDS)}
_DAYS = re.compile(
    rf"\b(?P<n>\d+(?:\.\d+)?|{'|'.join(sorted(_WORD_NUMBERS, key=len, reverse=True))}|an?)"
    r"\s+(?:(?:working|business|calendar)\s+)?(?P<unit>days?|weeks?)\b",
    re.IGNORECASE,
)
_WORKING_DAYS_PER_WEEK = 5

_ISO_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
# "severity 4" / "sev4" are read on our 1..5 scale (5 worst); P-levels run the other way.
_SEVERITY = re.compile(r"\bsev(?:erity)?\s*[:=#]?\s*(?P<sev>[1-5])\b|\bP(?P<prio>[0-4])\b", re.I)
_PRIORITY_TO_SEVERITY = {"0": 5, "1": 5, "2": 4, "3": 3, "4": 2}
# Used for SUPPORT only, when no explicit level was given; the first (most severe) match wins.
_SEVERITY_WORDS: list[tuple[int, re.Pattern[str]]] = [
    (5, re.compile(r"\b(?:outage|(?:is|are|went) down|critical|data loss|security breach"
                   r"|all (?:customers|users))\b", re.I)),
    (4, re.compile(r"\b(?:urgent|asap|blocked|blocking|can(?:no|')t (?:log ?in|access)"
                   r"|unable to|not working|broken)\b", re.I)),
    (2, re.compile(r"\b(?:minor|cosmetic|typo|low priority)\b", re.I)),
]  # fmt: skip

_QTY_ITEM = re.compile(r"(?<![\w$€£.,-])(\d{1,7})\s+(?:x\s+)?([A-Za-z][\w-]*(?:\s+[A-Za-z][\w-]*){0,2})")
_BUY_ITEM = re.compile(
    r"\b(?:buy|purchase|order|procure)\s+(?:(?:a|an|some|the)\s+)?"
    r"([A-Za-z][\w-]*(?:\s+[A-Za-z][\w-]*){0,2})",
    re.IGNORECASE,
)
# Words after a number that measure something other than goods ("5 days", "3 users").
_NOT_ITEMS = {
    "day", "days", "week", "weeks", "hour", "hours", "minute", "minutes", "month", "months",
    "year", "years", "working", "business", "percent", "users", "customers", "people", "times",
    "am", "pm", "k", "m", "bn", "thousand", "million", "billion",
}  # fmt: skip
# Words that end a noun phrase ("laptops for $52,000" -> "laptops").
_PHRASE_STOP = {
    "for", "from", "with", "to", "at", "by", "and", "on", "in", "before", "after", "please",
    "asap", "costing", "about", "so", "because", "per", "each", "which",
}  # fmt: skip

_COUNTERPARTY = re.compile(
    r"\b(?P<prep>with|from|to|for|at)\s+(?P<name>[A-Z][\w&'-]*(?:\s+(?:[A-Z][\w&'-]*|&))*)"
)
# Capitalised words that are not organisations.
_NOT_NAMES = {
    "I", "Me", "Us", "We", "You", "The", "A", "An", "This", "That", "Our", "My",
    "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday",
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
    "USD", "EUR", "GBP", "PTO", "ASAP", "P0", "P1", "P2", "P3", "P4", "Q1", "Q2", "Q3", "Q4",
}  # fmt: skip
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_EMAIL_ADAPTER: TypeAdapter[str] = TypeAdapter(EmailStr)
_TOPIC = re.compile(
    r"\b(?:about|regarding|concerning|re:)\s+(?:(?:the|our|their|a|an)\s+)?"
    r"(?P<topic>[\w-]+(?:\s+[\w-]+){0,4})",
    re.IGNORECASE,
)

_LEAVE_TYPES: list[tuple[str, re.Pattern[str]]] = [
    ("sick", re.compile(r"\b(?:sick|ill|illness|unwell|doctor|medical)\b", re.I)),
    ("parental", re.compile(r"\b(?:parental|maternity|paternity)\b", re.I)),
]

# --- actions --------------------------------------------------------------------------------

_PREFERRED_TOOL = {
    RequestType.PROCUREMENT: "create_purchase_order",
    RequestType.LEAVE: "record_leave",
    RequestType.SUPPORT: "open_support_ticket",
}
_FALLBACK_TOOL = "create_task"
# Fields that make the proposed action well-founded: (field, bonus when found, penalty when not).
_KEY_FIELDS: dict[str, list[tuple[str, float, float]]] = {
    "create_purchase_order": [("amount", 0.20, 0.20), ("item", 0.10, 0.10)],
    "record_leave": [("days", 0.20, 0.20), ("start_date", 0.05, 0.0)],
    "open_support_ticket": [("severity", 0.20, 0.10), ("counterparty", 0.05, 0.0)],
    "send_email": [("email", 0.20, 0.20), ("topic", 0.05, 0.05)],
    "create_task": [("counterparty", 0.05, 0.0), ("topic", 0.05, 0.0)],
}


@dataclass
class _Evidence:
    """Confidence parts and notes gathered while planning, so the rationale can show its working."""

    parts: list[tuple[str, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, label: str, delta: float) -> None:
        self.parts.append((label, delta))

    def confidence(self) -> float:
        return round(min(0.95, max(0.05, 0.35 + sum(d for _, d in self.parts))), 2)


def _phrase(words: str) -> str | None:
    """Cut a captured run of words at the first word that starts a new clause."""
    kept: list[str] = []
    for word in words.split():
        if word.lower() in _PHRASE_STOP:
            break
        kept.append(word)
    return " ".join(kept) or None


def _amount(text: str) -> tuple[float | None, str | None]:
    match = _MONEY.search(text)
    if match is None:
        return None, None
    g = match.groupdict()
    number = g["n1"] or g["n2"] or g["n3"] or g["n4"]
    scale = (g["s1"] or g["s2"] or g["s3"] or g["s4"] or "").lower()
    unit = (g["sym"] or g["code1"] or g["code2"] or "").lower().rstrip("s")
    currency = _CURRENCIES.get(unit, unit.upper() or None)
    return float(number.replace(",", "")) * _SCALES.get(scale, 1.0), currency


def _quantity_item(text: str) -> tuple[int | None, str | None]:
    for match in _QTY_ITEM.finditer(text):
        if match.group(2).split()[0].lower() not in _NOT_ITEMS:
            item = _phrase(match.group(2))
            if item:
                return int(match.group(1)), item
    verb = _BUY_ITEM.search(text)  # "buy a new monitor": an item without a count
    return None, _phrase(verb.group(1)) if verb else None


def _days(text: str) -> float | None:
    for match in _DAYS.finditer(text):
        n, unit = match.group("n").lower(), match.group("unit").lower()
        if n in ("a", "an") and not unit.startswith("week"):
            continue  # "$10k a day" is a rate, not a length; only "a week" counts
        value = 1.0 if n in ("a", "an") else float(_WORD_NUMBERS.get(n) or n)
        return value * _WORKING_DAYS_PER_WEEK if unit.startswith("week") else value
    return None


def _start_date(text: str) -> str | None:
    for match in _ISO_DATE.finditer(text):
        try:
            return date.fromisoformat(match.group(0)).isoformat()
        except ValueError:
            continue  # "2026-13-45" looks like a date but is not one
    return None


def _severity(text: str) -> int | None:
    match = _SEVERITY.search(text)
    if match is None:
        return None
    return int(match["sev"]) if match["sev"] else _PRIORITY_TO_SEVERITY[match["prio"]]


def _counterparty(text: str, requester: str) -> str | None:
    for match in _COUNTERPARTY.finditer(text):
        words = match.group("name").split()
        while words and (words[-1] == "&" or words[-1] in _NOT_NAMES):
            words.pop()
        name = " ".join(words)
        # "a monitor for Sam" names who it is for, not a vendor: after "for", only names that
        # look like organisations ("Acme Corp", "IBM") count.
        looks_like_org = len(words) > 1 or (len(name) > 1 and name.isupper())
        if match["prep"] == "for" and not looks_like_org:
            continue
        if words and words[0] not in _NOT_NAMES and name != requester:
            return name
    return None


def _extract(text: str, requester: str) -> RequestFields:
    amount, currency = _amount(text)
    quantity, item = _quantity_item(text)
    email = _EMAIL.search(text)
    topic = _TOPIC.search(text)
    return RequestFields(
        amount=amount,
        currency=currency or ("USD" if amount is not None else None),
        quantity=quantity,
        item=item,
        days=_days(text),
        start_date=_start_date(text),
        severity=_severity(text),
        counterparty=_counterparty(text, requester),
        email=email.group(0) if email else None,
        topic=_phrase(topic.group("topic")) if topic else None,
    )


def _apply_hints(fields: RequestFields, hints: dict[str, Any], ev: _Evidence) -> RequestFields:
    """The requester's explicit field values win; unknown keys and unusable values are skipped."""
    updates: dict[str, Any] = {}
    for key, value in sorted(hints.items()):
        if key not in RequestFields.model_fields:
            ev.notes.append(f"ignored unknown field hint {key!r}")
            continue
        if key == "currency" and isinstance(value, str):
            value = value.upper()
        try:
            updates[key] = getattr(RequestFields.model_validate({key: value}), key)
        except ValidationError:
            ev.notes.append(f"ignored invalid field hint {key}={value!r}")
    if updates:
        ev.notes.append(f"field hints applied: {', '.join(updates)}")
    return fields.model_copy(update=updates)


def _classify(text: str, fields: RequestFields) -> tuple[RequestType, list[str]]:
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


def _valid_email(value: str | None) -> bool:
    if value is None:
        return False
    try:
        _EMAIL_ADAPTER.validate_python(value)
    except ValidationError:
        return False
    return True


def _title(text: str, limit: int = 120) -> str:
    """The first sentence, without email addresses, capitalised and cut at a word boundary."""
    sentence = re.split(r"(?<=[.!?])\s+|\n", text.strip(), maxsplit=1)[0]
    sentence = _EMAIL.sub("", sentence)
    words = sentence.replace("()", "").split()
    while words and words[-1].lower().rstrip(" .!?,;:") in _PHRASE_STOP:
        words.pop()  # "email them at <address>" loses the address, so drop the dangling "at"
    sentence = " ".join(words).rstrip(" .!?,;:")
    if len(sentence) > limit:
        sentence = sentence[:limit].rsplit(" ", 1)[0] + "..."
    return sentence[:1].upper() + sentence[1:]


def _leave_type(text: str) -> str:
    return next((name for name, pattern in _LEAVE_TYPES if pattern.search(text)), "annual")


def _build_args(tool: str, f: RequestFields, text: str, requester: str) -> dict[str, Any] | None:
    """Arguments for the built-in tools. Unknown facts are left out, never invented."""
    who = requester[:128]
    if tool == "create_purchase_order":
        args: dict[str, Any] = {"vendor": f.counterparty, "quantity": f.quantity or 1}
        args["currency"] = f.currency or "USD"
        if f.item:
            args["item"] = f.item
        if f.amount is not None:
            args["amount"] = f.amount
        return args
    if tool == "record_leave":
        args = {"employee": who, "leave_type": _leave_type(text)}
        args.update({k: v for k, v in (("days", f.days), ("start_date", f.start_date)) if v is not None})
        return args
    if tool == "open_support_ticket":
        return {
            "title": _title(text) or "Support request",
            "description": text,
            "severity": f.severity or 3,
            "customer": f.counterparty,
        }
    if tool == "send_email":
        greeting = f"Hello {f.counterparty} team," if f.counterparty else "Hello,"
        about = f"about {f.topic}" if f.topic else "on my earlier request"
        body = (
            f"{greeting}\n\nI am following up {about}. Could you please share an update "
            f"when convenient?\n\nKind regards,\n{requester}"
        )
        subject = f"Follow-up: {f.topic}" if f.topic else f"Follow-up from {requester}"
        return {"to": f.email, "subject": subject[:200], "body": body}
    if tool == "create_task":
        return {
            "title": _title(text) or f"Request from {who}",
            "description": text,
            "assignee": who,
        }
    return None


def _summary(
    rtype: RequestType, f: RequestFields, args: dict[str, Any], tool: str, text: str, requester: str
) -> str:
    if rtype is RequestType.PROCUREMENT:
        what = " ".join(str(x) for x in (f.quantity, f.item) if x) or "unspecified items"
        what += f" from {f.counterparty}" if f.counterparty else ""
        cost = f" for {f.currency or 'USD'} {f.amount:,.2f}" if f.amount is not None else ""
        head = f"Procurement request from {requester}: {what}{cost or ' (no amount stated)'}"
    elif rtype is RequestType.LEAVE:
        length = f"{f.days:g} day{'s' if f.days != 1 else ''} of " if f.days else ""
        start = f" starting {f.start_date}" if f.start_date else ""
        head = f"Leave request from {requester}: {length}{_leave_type(text)} leave{start}"
    elif rtype is RequestType.SUPPORT:
        extra = f", customer {f.counterparty}" if f.counterparty else ""
        head = f"Support request from {requester}: {_title(text)} (severity {f.severity or 3}{extra})"
    else:
        head = f"Request from {requester}: {_title(text)}"
    proposed = {
        "create_purchase_order": "raise a purchase order",
        "record_leave": "record the leave",
        "open_support_ticket": "open a support ticket",
        "send_email": f"send an email to {args.get('to')}",
        "create_task": f"create a task for {args.get('assignee')}",
    }.get(tool, f"call {tool}")
    return f"{head}. Proposed: {proposed}."[:600]


def _read_feedback(feedback: list[str], fields: RequestFields, ev: _Evidence) -> bool:
    """Lower confidence for a rejected previous attempt; return True when the tool was unknown."""
    if not feedback:
        return False
    ev.add("previous attempt was flagged", -0.10)
    ev.notes.append(f"previous attempt flagged: {'; '.join(feedback[:3])[:300]}")
    named = [n for n in RequestFields.model_fields if any(re.search(rf"\b{n}\b", f) for f in feedback)]
    unfillable = [n for n in named if getattr(fields, n) is None]
    if unfillable:
        ev.add("feedback names fields the text does not give", -0.15)
        ev.notes.append(f"cannot fill {', '.join(unfillable)} from the request text")
    return any(re.search(r"unknown[_ ]tool|is not one of", f, re.I) for f in feedback)


def _decide_type(request: PlanInput, fields: RequestFields, ev: _Evidence) -> RequestType:
    """Keywords propose a type; the requester's explicit type hint, when given, always wins."""
    rtype, hits = _classify(request.request.text, fields)
    hint = request.request.type
    if hint is not None:
        # A hint is a claim, not evidence: it sets the type but earns confidence only as far as the
        # words of the request bear it out (it once added 0.30 on its own, whatever the text said).
        if hint == rtype and hits:
            ev.add(f"keywords: {', '.join(hits)}", min(0.25, 0.15 + 0.05 * (len(hits) - 1)))
        else:
            ev.add(f"nothing in the text supports the hinted type {hint}", -0.10)
        seen = f" (keywords suggested {rtype}: {', '.join(hits) or 'none'})" if hint != rtype else ""
        ev.notes.append(f"type {hint} given as a hint{seen}")
        return hint
    if hits:
        ev.add(f"keywords: {', '.join(hits)}", min(0.25, 0.15 + 0.05 * (len(hits) - 1)))
        ev.notes.append(f"type {rtype} from keywords: {', '.join(hits)}")
    else:
        ev.add("no type keywords, GENERAL fallback", -0.10)
        ev.notes.append("no type keywords matched, so GENERAL")
    return rtype


def _infer_severity(text: str, fields: RequestFields, ev: _Evidence) -> RequestFields:
    """A support request without an explicit level gets one from its wording, noted as inferred."""
    level = next((lvl for lvl, pattern in _SEVERITY_WORDS if pattern.search(text)), None)
    if fields.severity is not None or level is None:
        return fields
    ev.notes.append(f"severity {level} inferred from wording")
    return fields.model_copy(update={"severity": level})


def _preferred_tool(rtype: RequestType, fields: RequestFields, ev: _Evidence) -> str:
    if rtype is not RequestType.GENERAL:
        return _PREFERRED_TOOL[rtype]
    if _valid_email(fields.email):
        return "send_email"
    if fields.email:
        ev.notes.append(f"{fields.email!r} is not a deliverable address, so no email")
    return _FALLBACK_TOOL


def _score_fields(preferred: str, fields: RequestFields, inferred: set[str], ev: _Evidence) -> None:
    for name, bonus, penalty in _KEY_FIELDS.get(preferred, []):
        if getattr(fields, name) is not None:
            ev.add(f"{name} found", bonus / 2 if name in inferred else bonus)
        elif penalty:
            ev.add(f"{name} missing", -penalty)


def _choose_tool(preferred: str, tools: list[ToolSpec], unknown_tool: bool, ev: _Evidence) -> str:
    """The preferred tool if offered; else create_task; else whatever is offered first."""
    offered = [t.name for t in tools]
    tool = _FALLBACK_TOOL if unknown_tool else preferred
    if tool not in offered:
        tool = _FALLBACK_TOOL if _FALLBACK_TOOL in offered else offered[0]
    if tool != preferred:
        why = "feedback called the tool unknown" if unknown_tool else f"{preferred} is not offered"
        ev.add(f"{preferred} not used", -0.15)
        ev.notes.append(f"{why}, so proposing {tool}")
    return tool


class RulesPlanner:
    """Keyword/regex planner. Confidence = 0.35 plus evidence, clamped to [0.05, 0.95]:

    - type: +0.15 for the first keyword hit and +0.05 for each further hit (at most +0.25); -0.10 when
      nothing matched and GENERAL is the fallback. An explicit type hint sets the type but adds
      nothing the keywords do not bear out.
    - key fields of the preferred action (`_KEY_FIELDS`): e.g. amount +0.20 when found, -0.20
      when missing; a severity inferred from words like "outage" earns half its bonus.
    - -0.15 when the preferred tool is not used, -0.20 more when no arguments can be built.
    - -0.10 when the previous attempt was flagged, -0.15 more when it names fields still missing.
    """

    name: str = "rules"

    async def plan(self, request: PlanInput, tools: list[ToolSpec]) -> Plan:
        if not tools:
            raise ValueError("the rules planner needs at least one tool to propose")
        text, requester = request.request.text, request.requester_name
        ev = _Evidence()
        fields = _extract(text, requester)
        fields = _apply_hints(fields, dict(request.request.fields or {}), ev)
        rtype = _decide_type(request, fields, ev)
        inferred: set[str] = set()
        if rtype is RequestType.SUPPORT:
            before, fields = fields.severity, _infer_severity(text, fields, ev)
            inferred = {"severity"} if before != fields.severity else set()

        unknown_tool = _read_feedback(request.feedback, fields, ev)
        preferred = _preferred_tool(rtype, fields, ev)
        _score_fields(preferred, fields, inferred, ev)
        tool = _choose_tool(preferred, tools, unknown_tool, ev)
        args = _build_args(tool, fields, text, requester)
        if args is None:
            args = {}
            ev.add(f"no arguments known for {tool}", -0.20)
            ev.notes.append(f"the rules planner cannot fill arguments for {tool}")

        confidence = ev.confidence()
        found = ", ".join(f"{k}={v}" for k, v in fields.model_dump(exclude_none=True).items())
        missing = [n for n, _, _ in _KEY_FIELDS.get(preferred, []) if getattr(fields, n) is None]
        score = ", ".join(f"{label} {delta:+.2f}" for label, delta in ev.parts)
        rationale = (
            f"{'; '.join(ev.notes)}. Action {tool} for a {rtype} request. "
            f"Found: {found or 'nothing'}. Missing: {', '.join(missing) or 'nothing'}. "
            f"Confidence {confidence:.2f} = 0.35 base, {score}."
        )
        return Plan(
            request_type=rtype,
            fields=fields,
            summary=_summary(rtype, fields, args, tool, text, requester),
            tool=tool,
            args=args,
            confidence=confidence,
            rationale=rationale[:2000],
            planner=self.name,
        )
