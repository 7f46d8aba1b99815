"""Typed arguments and results of the built-in tools; the planner's JSON schema comes from these."""

from datetime import date

from pydantic import BaseModel, ConfigDict, EmailStr, Field


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# One line: every character Python, mail clients or HTTP stacks may take for a line break refused
# (CR, LF, VT, FF, the file/group/record separators, NEL, U+2028, U+2029). A header value with one
# would be refused at send time, after approval, or split into headers nobody approved.
ONE_LINE = "^[^\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]*$"


class SendEmailArgs(_Args):
    to: EmailStr
    subject: str = Field(min_length=1, max_length=200, pattern=ONE_LINE)
    body: str = Field(min_length=1, max_length=20_000)
    cc: list[EmailStr] = Field(default_factory=list, max_length=20)


class SendEmailResult(BaseModel):
    message_id: str
    # The message's name in the outbox (`<sha256 of the key>.eml`, `tools.effects.message_name`): the
    # field kept its name from when the outbox was a directory of files.
    outbox_file: str


class CreateTaskArgs(_Args):
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=10_000)
    assignee: str | None = Field(default=None, max_length=128)
    due_date: date | None = None


class CreateTaskResult(BaseModel):
    task_id: str


class CreatePurchaseOrderArgs(_Args):
    # None means procurement is to source a vendor; the order is still raised for approval.
    vendor: str | None = Field(default=None, min_length=1, max_length=200)
    item: str = Field(min_length=1, max_length=200)
    quantity: int = Field(default=1, ge=1, le=1_000_000)
    amount: float = Field(gt=0, le=1_000_000_000, description="Total order value")
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")


class CreatePurchaseOrderResult(BaseModel):
    po_number: str


class RecordLeaveArgs(_Args):
    employee: str = Field(min_length=1, max_length=128)
    days: float = Field(gt=0, le=365)
    start_date: date | None = None
    leave_type: str = Field(default="annual", max_length=32)


class RecordLeaveResult(BaseModel):
    leave_id: str


class OpenSupportTicketArgs(_Args):
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=10_000)
    severity: int = Field(ge=1, le=5)
    customer: str | None = Field(default=None, max_length=200)


class OpenSupportTicketResult(BaseModel):
    ticket_id: str
