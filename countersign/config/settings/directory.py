"""The tenant directory's settings (docs/directory.md)."""

from pydantic import BaseModel, Field


class DirectorySettings(BaseModel):
    # The currency policies compare amounts in (`amount_base`): the directory's exchange rates convert
    # into it. ISO 4217.
    base_currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
