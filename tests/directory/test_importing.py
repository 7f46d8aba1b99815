"""Reading directory imports: JSON (a list, or {"records": [...]}) and CSV (a header row, `;` between a
list's items, empty cells absent), and refusals that name each bad row and field, all or nothing."""

import datetime as dt

import pytest

from countersign.directory.importing import (
    MAX_PROBLEMS,
    DirectoryImportInvalid,
    DirectoryImportUnreadable,
    format_of,
    kind_of,
    parse_records,
)
from countersign.models.directory import Budget, Counterparty, DirectoryKind, Person, Rate
from countersign.models.directory_admin import MAX_IMPORT_ROWS

CP = DirectoryKind.COUNTERPARTIES

COUNTERPARTIES_CSV = """\
name,aliases,emails,phone,vendor_id,default_contact
ABC Logistics,ABC Logistics Inc; ABC,sales@abclogistics.com; billing@abclogistics.com,+1 555 0100,V-1001,\
sales@abclogistics.com
"Acme, Supplies",,,,V-1002,orders@acmesupplies.example

Globex,,,,,
"""


def test_csv_rows_with_lists_and_empty_cells() -> None:
    records = parse_records(CP, COUNTERPARTIES_CSV.encode(), "counterparties.csv")
    assert records == [
        Counterparty(
            name="ABC Logistics",
            aliases=["ABC Logistics Inc", "ABC"],
            emails=["sales@abclogistics.com", "billing@abclogistics.com"],
            phone="+1 555 0100",
            vendor_id="V-1001",
            default_contact="sales@abclogistics.com",
        ),
        Counterparty(
            name="Acme, Supplies",
            emails=["orders@acmesupplies.example"],
            vendor_id="V-1002",
            default_contact="orders@acmesupplies.example",
        ),
        Counterparty(name="Globex"),
    ]


def test_csv_of_each_other_kind() -> None:
    # A byte-order mark (Excel's UTF-8) and columns in any order; a rate's base defaults to USD.
    rates = "\ufeffas_of,currency,rate\n2026-12-01,eur,1.08\n"
    assert parse_records(DirectoryKind.RATES, rates.encode(), "csv") == [
        Rate(currency="EUR", base="USD", rate=1.08, as_of=dt.date(2026, 12, 1))
    ]
    budgets = "cost_center,currency,remaining\nENG,USD,25000\n"
    assert parse_records(DirectoryKind.BUDGETS, budgets, "budgets.CSV") == [
        Budget(cost_center="ENG", currency="USD", remaining=25000)
    ]
    people = "name,email,manager,department,cost_center\nJane Doe,jane.doe@example.com,Sam Lee,,ENG\n"
    assert parse_records(DirectoryKind.PEOPLE, people, "people.csv") == [
        Person(name="Jane Doe", email="jane.doe@example.com", manager="Sam Lee", cost_center="ENG")
    ]


def test_json_as_a_list_or_an_object_of_records() -> None:
    rows = '[{"name": "Jane Doe", "email": "jane.doe@example.com", "manager": null, "department": ""}]'
    expected = [Person(name="Jane Doe", email="jane.doe@example.com")]
    assert parse_records(DirectoryKind.PEOPLE, rows, "json") == expected
    assert parse_records(DirectoryKind.PEOPLE, f'{{"records": {rows}}}'.encode(), "people.json") == expected
    listed = (
        '{"records": [{"name": "Dell", "aliases": ["Dell Technologies"], '
        '"emails": "a@dell.example; b@dell.example"}]}'
    )
    assert parse_records(CP, listed, "json") == [
        Counterparty(name="Dell", aliases=["Dell Technologies"], emails=["a@dell.example", "b@dell.example"])
    ]


def test_bad_rows_are_named_by_line_and_field_and_nothing_is_returned() -> None:
    text = "name,emails,default_contact\nGood,,good@example.com\nBad Mail,not-an-address,\n,,x@example.com\n"
    with pytest.raises(DirectoryImportInvalid) as caught:
        parse_records(CP, text, "counterparties.csv")
    problems = caught.value.problems
    assert len(problems) == 2, problems
    assert problems[0].startswith("line 3, emails[0]: value is not a valid email address")
    assert "not-an-address" in problems[0]
    assert problems[1] == "line 4, name: Field required"
    assert caught.value.message.startswith("counterparties.csv: nothing was imported; 2 problems:")
    assert caught.value.code == "DirectoryImportInvalid"


def test_json_problems_name_the_record() -> None:
    rows = (
        '{"records": [{"cost_center": "ENG", "currency": "dollars", "remaining": 1}, 7, '
        '{"cost_center": "X"}]}'
    )
    with pytest.raises(DirectoryImportInvalid) as caught:
        parse_records(DirectoryKind.BUDGETS, rows, "json")
    assert caught.value.problems[0].startswith("record 1, currency: String should match pattern")
    assert caught.value.problems[1] == "record 2: expected an object of fields, got int"
    assert "record 3, currency: Field required" in caught.value.problems
    assert "record 3, remaining: Field required" in caught.value.problems
    # Fields a kind does not have are refused, not dropped.
    with pytest.raises(DirectoryImportInvalid, match=r"record 1, colour: Extra inputs are not permitted"):
        parse_records(DirectoryKind.PEOPLE, '[{"name": "A", "colour": "red"}]', "json")


def test_a_bad_header_is_refused_before_any_row() -> None:
    with pytest.raises(DirectoryImportInvalid) as caught:
        parse_records(CP, "nom,emails,emails\nAcme,,\n", "counterparties.csv")
    assert caught.value.problems == [
        "header: column 'nom' is not a field of counterparties",
        "header: column 'emails' appears twice",
        "header: no column 'name', which every record of counterparties needs",
        "header: the fields of counterparties are name, aliases, emails, phone, vendor_id, default_contact",
    ]
    with pytest.raises(DirectoryImportInvalid, match="line 2: 3 cells, but the header names 2"):
        parse_records(CP, "name,phone\nAcme,1,2\n", "csv")


def test_at_most_ten_problems_are_listed() -> None:
    text = "cost_center,currency,remaining\n" + "ENG,USD,lots\n" * 25
    with pytest.raises(DirectoryImportInvalid) as caught:
        parse_records(DirectoryKind.BUDGETS, text, "csv")
    assert len(caught.value.problems) == 25
    lines = caught.value.message.splitlines()
    assert lines[0] == "the csv import: nothing was imported; 25 problems:"
    assert len(lines) == 1 + MAX_PROBLEMS + 1 and lines[-1] == "... and 15 more"
    assert lines[1].startswith("line 2, remaining: Input should be a valid number")


def test_unreadable_and_oversized_imports() -> None:
    with pytest.raises(DirectoryImportUnreadable, match="not JSON: Expecting value at line 1, column 1"):
        parse_records(CP, "name\nAcme\n", "json")
    with pytest.raises(DirectoryImportUnreadable, match="not UTF-8"):
        parse_records(CP, b"name\n\xff\n", "csv")
    with pytest.raises(DirectoryImportUnreadable, match="no header row"):
        parse_records(CP, "", "csv")
    with pytest.raises(DirectoryImportInvalid, match="expected a list of records"):
        parse_records(CP, '{"name": "Acme"}', "json")
    with pytest.raises(DirectoryImportInvalid, match=f"more than {MAX_IMPORT_ROWS} records"):
        parse_records(CP, "name\n" + "Acme\n" * (MAX_IMPORT_ROWS + 1), "csv")
    with pytest.raises(DirectoryImportInvalid, match=f"more than {MAX_IMPORT_ROWS} records"):
        parse_records(CP, "[" + ",".join(['{"name": "A"}'] * (MAX_IMPORT_ROWS + 1)) + "]", "json")
    with pytest.raises(DirectoryImportUnreadable, match="at most"):
        parse_records(CP, "name\n" + "A" * 6_000_000, "csv")
    with pytest.raises(DirectoryImportUnreadable, match=r"a \.csv or a \.json file"):
        parse_records(CP, "name\nAcme\n", "counterparties.xlsx")


def test_kind_and_format_from_a_file_name() -> None:
    assert kind_of("counterparties.csv") == CP
    assert kind_of("/tmp/exports/acme-people.JSON") == DirectoryKind.PEOPLE
    assert kind_of("q3_budgets.csv") == DirectoryKind.BUDGETS
    assert kind_of("vendors.csv") is None
    assert (format_of("x/rates.json"), format_of("CSV")) == ("json", "csv")
