"""Fuzzy matching against the directory: clear answers, ambiguous ones listed, short aliases as words."""

from countersign.directory.match import lookup, mentioned, search
from countersign.models.directory import Counterparty, Person

ABC = Counterparty(name="ABC Logistics", aliases=["ABC"], default_contact="sales@abclogistics.com")
ABC_LEGAL = Counterparty(name="ABC Legal", aliases=["ABC"])
ACME = Counterparty(name="Acme Supplies", aliases=["Acme"], vendor_id="V-2")
RECORDS = [ABC, ABC_LEGAL, ACME]


def test_a_full_name_in_the_text_is_a_clear_mention() -> None:
    [found] = mentioned("m", RECORDS, "Follow up with ABC Logistics about pricing")
    assert found.found is not None and found.found["name"] == "ABC Logistics"
    assert found.found["default_contact"] == "sales@abclogistics.com"
    assert not found.ambiguous


def test_an_alias_two_records_share_is_ambiguous_and_lists_both() -> None:
    [found] = mentioned("m", RECORDS, "Ping ABC about the contract")
    assert found.ambiguous and found.found is None
    assert sorted(m.record["name"] for m in found.matches) == ["ABC Legal", "ABC Logistics"]


def test_a_short_alias_counts_only_as_a_whole_word() -> None:
    assert mentioned("m", RECORDS, "the abcde project and fabc") == []
    assert mentioned("m", RECORDS, "nothing relevant here") == []


def test_a_name_inside_a_longer_mentioned_name_is_the_longer_ones() -> None:
    europe = Counterparty(name="ABC Logistics Europe")
    [found] = mentioned("m", [ABC, europe], "Write to ABC Logistics Europe")
    assert found.found is not None and found.found["name"] == "ABC Logistics Europe"


def test_mentions_come_in_the_order_of_the_text() -> None:
    found = mentioned("m", RECORDS, "Compare Acme Supplies with ABC Logistics")
    assert [f.found["name"] for f in found if f.found] == ["Acme Supplies", "ABC Logistics"]


def test_lookup_forgives_a_typo_but_not_a_stranger() -> None:
    typo = lookup("find_counterparty", RECORDS, "ABC Logistic")
    assert typo.found is not None and typo.found["name"] == "ABC Logistics"
    assert lookup("find_counterparty", RECORDS, "Globex").matches == []


def test_lookup_of_a_shared_alias_is_ambiguous() -> None:
    answer = lookup("find_counterparty", RECORDS, "ABC")
    assert answer.ambiguous and len(answer.matches) == 2


def test_people_are_found_by_email_too() -> None:
    jane = Person(name="Jane Doe", email="jane.doe@example.com")
    answer = lookup("find_person", [jane], "jane.doe@example.com")
    assert answer.found is not None and answer.found["name"] == "Jane Doe"


def test_search_ranks_and_blank_lists_all() -> None:
    assert search(RECORDS, "acme")[0] == ACME
    assert search(RECORDS, "") == RECORDS


def test_one_word_is_not_the_first_word_of_a_longer_name() -> None:
    assert mentioned("m", RECORDS, "Acme Corp checkout is down") == []
    [found] = mentioned("m", RECORDS, "Order chairs from Acme for the office")
    assert found.found is not None and found.found["name"] == "Acme Supplies"
