"""The rules planner's field extraction: amounts, quantities and items, days, dates, severity,
counterparty, email and topic, read from the request's words with regular expressions.

Unknown facts are left out (None), never invented.
"""

import re
from datetime import date

from countersign.models.proposal import RequestFields

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
PHRASE_STOP = {
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
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_TOPIC = re.compile(
    r"\b(?:about|regarding|concerning|re:)\s+(?:(?:the|our|their|a|an)\s+)?"
    r"(?P<topic>[\w-]+(?:\s+[\w-]+){0,4})",
    re.IGNORECASE,
)

_LEAVE_TYPES: list[tuple[str, re.Pattern[str]]] = [
    ("sick", re.compile(r"\b(?:sick|ill|illness|unwell|doctor|medical)\b", re.I)),
    ("parental", re.compile(r"\b(?:parental|maternity|paternity)\b", re.I)),
]


def phrase(words: str) -> str | None:
    """Cut a captured run of words at the first word that starts a new clause."""
    kept: list[str] = []
    for word in words.split():
        if word.lower() in PHRASE_STOP:
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
            item = phrase(match.group(2))
            if item:
                return int(match.group(1)), item
    verb = _BUY_ITEM.search(text)  # "buy a new monitor": an item without a count
    return None, phrase(verb.group(1)) if verb else None


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


def extract_fields(text: str, requester: str) -> RequestFields:
    amount, currency = _amount(text)
    quantity, item = _quantity_item(text)
    email = EMAIL.search(text)
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
        topic=phrase(topic.group("topic")) if topic else None,
    )


def leave_type(text: str) -> str:
    return next((name for name, pattern in _LEAVE_TYPES if pattern.search(text)), "annual")


# Used for SUPPORT only, when no explicit level was given; the first (most severe) match wins.
_SEVERITY_WORDS: list[tuple[int, re.Pattern[str]]] = [
    (5, re.compile(r"\b(?:outage|(?:is|are|went) down|critical|data loss|security breach"
                   r"|all (?:customers|users))\b", re.I)),
    (4, re.compile(r"\b(?:urgent|asap|blocked|blocking|can(?:no|')t (?:log ?in|access)"
                   r"|unable to|not working|broken)\b", re.I)),
    (2, re.compile(r"\b(?:minor|cosmetic|typo|low priority)\b", re.I)),
]  # fmt: skip


def severity_from_wording(text: str) -> int | None:
    """The level a support request's wording suggests, when it gives no explicit one."""
    return next((lvl for lvl, pattern in _SEVERITY_WORDS if pattern.search(text)), None)
