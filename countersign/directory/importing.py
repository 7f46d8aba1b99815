"""Reading a directory import: a CSV or JSON file (or request body) into records of one kind.

CSV: a header row of field names, then one record per row; a list field (aliases, emails) holds its
items separated by `;` (commas are the CSV's own). JSON: a list of objects, or `{"records": [...]}`.
An empty cell, a blank string or a JSON null is an absent field (its default, if it has one).

All or nothing: every row is checked, and any problem refuses the whole import with one
`DirectoryImportInvalid` naming each bad row and field (the first MAX_PROBLEMS of them).
"""

import csv
import io
import json
from pathlib import PurePath
from typing import Any

from pydantic import ValidationError

from countersign.models.directory import RECORD_MODELS, DirectoryKind, Record
from countersign.models.directory_admin import MAX_IMPORT_ROWS
from countersign.models.errors import Invalid

MAX_IMPORT_BYTES = 5 * 1024 * 1024
MAX_PROBLEMS = 10
FORMATS = ("csv", "json")


class DirectoryImportInvalid(Invalid):
    """An import refused, with every problem found (`problems`), each naming its row and field."""

    def __init__(self, problems: list[str], source: str = "the import") -> None:
        shown = problems[:MAX_PROBLEMS]
        more = len(problems) - len(shown)
        lines = [f"{source}: nothing was imported; {_plural(len(problems), 'problem')}:", *shown]
        if more:
            lines.append(f"... and {more} more")
        super().__init__("\n".join(lines), "DirectoryImportInvalid")
        self.problems = problems


class DirectoryImportUnreadable(DirectoryImportInvalid):
    """Not CSV or JSON at all (or not UTF-8): nothing in it could be read as rows."""


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def format_of(filename_or_format: str) -> str:
    """`csv` or `json`, from a format's name or a file name's extension."""
    text = filename_or_format.strip().lower()
    found = text if text in FORMATS else PurePath(text).suffix.lstrip(".")
    if found not in FORMATS:
        raise DirectoryImportUnreadable(
            [f"{filename_or_format!r}: a directory import is CSV or JSON (a .csv or a .json file)"],
            filename_or_format,
        )
    return found


def kind_of(filename: str) -> DirectoryKind | None:
    """The kind a file's name says: `counterparties.csv`, `people.json`, `acme-rates.csv`."""
    stem = PurePath(filename).stem.lower()
    for kind in DirectoryKind:
        if stem == kind.value or stem.endswith((f"-{kind.value}", f"_{kind.value}", f".{kind.value}")):
            return kind
    return None


def parse_records(kind: DirectoryKind, content: bytes | str, filename_or_format: str) -> list[Record]:
    """Every record of `content`, in order; raises DirectoryImportInvalid (nothing to import) when any
    row is invalid, DirectoryImportUnreadable when it is not CSV or JSON at all."""
    fmt = format_of(filename_or_format)
    source = filename_or_format if fmt != filename_or_format.strip().lower() else f"the {fmt} import"
    size = len(content.encode("utf-8") if isinstance(content, str) else content)
    if size > MAX_IMPORT_BYTES:
        raise DirectoryImportUnreadable([f"{size} bytes: an import holds at most {MAX_IMPORT_BYTES}"], source)
    if isinstance(content, bytes):
        try:
            content = content.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise DirectoryImportUnreadable(
                [f"not UTF-8 text ({error.reason} at byte {error.start})"], source
            ) from None
    rows = _csv_rows(kind, content, source) if fmt == "csv" else _json_rows(content, source)
    if len(rows) > MAX_IMPORT_ROWS:
        raise DirectoryImportInvalid([f"more than {MAX_IMPORT_ROWS} records: split the import"], source)
    model = RECORD_MODELS[kind]
    records: list[Record] = []
    problems: list[str] = []
    for where, row in rows:
        if isinstance(row, _RowProblem):
            problems.append(f"{where}: {row}")
            continue
        if not isinstance(row, dict):
            problems.append(f"{where}: expected an object of fields, got {type(row).__name__}")
            continue
        try:
            records.append(model.model_validate({k: v for k, v in row.items() if not _blank(v)}))
        except ValidationError as error:
            problems.extend(f"{where}, {_field(e['loc'])}: {_message(e)}" for e in error.errors())
    if problems:
        raise DirectoryImportInvalid(problems, source)
    return records


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _field(loc: tuple[int | str, ...]) -> str:
    if not loc:
        return "record"
    name, *rest = loc
    return str(name) + "".join(f"[{part}]" for part in rest)


def _message(error: Any) -> str:
    value = error.get("input")
    if not isinstance(value, str | int | float) or error["type"] == "missing":
        return str(error["msg"])
    shown = repr(value)
    return f"{error['msg']} (got {shown if len(shown) <= 60 else shown[:59] + '…'})"


class _RowProblem(str):
    """A CSV row that is no record at all (more cells than columns)."""


def _csv_rows(kind: DirectoryKind, text: str, source: str) -> list[tuple[str, Any]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [name.strip() for name in next(reader, [])]
        if not any(header):
            raise DirectoryImportUnreadable(["no header row: the first line names the fields"], source)
        _check_header(kind, header, source)
        rows: list[tuple[str, Any]] = []
        line = reader.line_num + 1  # where the next row starts (a quoted cell may span lines)
        for cells in reader:
            if any(cell.strip() for cell in cells):
                if len(cells) > len(header):
                    problem = f"{len(cells)} cells, but the header names {len(header)}"
                    rows.append((f"line {line}", _RowProblem(problem)))
                else:
                    rows.append((f"line {line}", dict(zip(header, cells, strict=False))))
            line = reader.line_num + 1
            if len(rows) > MAX_IMPORT_ROWS:
                break  # enough to refuse it
    except csv.Error as error:
        raise DirectoryImportUnreadable([f"line {reader.line_num}: not CSV ({error})"], source) from None
    return rows


def _check_header(kind: DirectoryKind, header: list[str], source: str) -> None:
    fields = RECORD_MODELS[kind].model_fields
    named = [name for name in header if name]  # an unnamed column (a trailing comma) must stay empty
    problems = [
        f"header: column {name!r} is not a field of {kind.value}" for name in named if name not in fields
    ]
    problems += [
        f"header: column {name!r} appears twice" for name in sorted(set(named)) if named.count(name) > 1
    ]
    required = [name for name, field in fields.items() if field.is_required() and name not in header]
    problems += [f"header: no column {name!r}, which every record of {kind.value} needs" for name in required]
    if problems:
        problems.append(f"header: the fields of {kind.value} are {', '.join(fields)}")
        raise DirectoryImportInvalid(problems, source)


def _json_rows(text: str, source: str) -> list[tuple[str, Any]]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise DirectoryImportUnreadable(
            [f"not JSON: {error.msg} at line {error.lineno}, column {error.colno}"], source
        ) from None
    except RecursionError:
        raise DirectoryImportUnreadable(["not JSON: nested too deeply"], source) from None
    if isinstance(value, dict) and set(value) == {"records"}:
        value = value["records"]
    if not isinstance(value, list):
        raise DirectoryImportInvalid(['expected a list of records, or {"records": [...]}'], source)
    return [(f"record {number}", row) for number, row in enumerate(value, 1)]
