"""Lists in the environment: `a, b` there, a list in code."""


def split_commas(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value
