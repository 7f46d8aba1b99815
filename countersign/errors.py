"""Domain errors raised by the service layer; the gateway maps each to one HTTP status."""


class CountersignError(Exception):
    """Base class; `code` is a stable machine-readable reason."""

    code = "error"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class NotFound(CountersignError):
    code = "NotFound"


class Forbidden(CountersignError):
    code = "Forbidden"


class Conflict(CountersignError):
    code = "Conflict"


class Invalid(CountersignError):
    code = "Invalid"


class Unavailable(CountersignError):
    code = "Unavailable"
