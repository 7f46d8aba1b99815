"""`POST /workflows`' body as it crosses into a workflow and into the idempotency digest: a planner's
request keeps the exact bytes it had before callers could send their own action or a callback URL, so
a resubmission under the same Idempotency-Key across an upgrade still lands on its workflow."""

import pytest
from pydantic import ValidationError

from countersign.models.enums import RequestType
from countersign.models.requests import SubmitRequest


def test_a_planners_request_dumps_as_it_did_before_caller_actions() -> None:
    # The exact JSON the release before caller actions dumped (text, type, fields; nothing else).
    assert SubmitRequest(text="buy 40 laptops").model_dump_json() == (
        '{"text":"buy 40 laptops","type":null,"fields":null}'
    )
    hinted = SubmitRequest(text="buy pens", type=RequestType.PROCUREMENT, fields={"amount": 5})
    assert hinted.model_dump_json() == '{"text":"buy pens","type":"PROCUREMENT","fields":{"amount":5}}'


def test_a_callers_action_dumps_what_it_brought() -> None:
    request = SubmitRequest(
        action={"tool": "create_task", "args": {"title": "x"}}, summary="s", context={"a": 1}
    )
    dumped = request.model_dump()
    assert dumped["action"] == {"tool": "create_task", "args": {"title": "x"}}
    assert (dumped["summary"], dumped["context"], dumped["text"]) == ("s", {"a": 1}, None)
    assert SubmitRequest.model_validate_json(request.model_dump_json()) == request


@pytest.mark.parametrize(
    "body",
    [{}, {"summary": "s"}, {"text": "buy pens", "context": "c"}],
    ids=["nothing", "summary", "context"],
)
def test_a_body_needs_words_or_an_action(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        SubmitRequest.model_validate(body)
