"""Field types for request models whose JSON Schema states exactly what they accept, no more, no less.

`/openapi.json` is generated from these models, and clients are generated from it: a request the
document allows must be accepted, and one it forbids refused. Pydantic's lax mode would take `true`
for a number or `"5"` for an integer, which JSON Schema forbids, so numbers and booleans are strict
here; an integer still takes `5.0`, which JSON Schema counts as an integer.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, Strict, StringConstraints


def whole_float_as_int(value: Any) -> Any:
    """`5.0` as `5`: JSON Schema counts it as an integer."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


# Bounds given outside (`Integer | None = Field(ge=1)`) miss an optional field's JSON Schema: such a
# field declares its own Annotated[int, Strict(), Field(...), BeforeValidator(whole_float_as_int)].
Integer = Annotated[int, Strict(), BeforeValidator(whole_float_as_int)]
Number = Annotated[float, Strict()]
Boolean = Annotated[bool, Strict()]

# The characters `str.strip()` trims (those `str.isspace()` calls whitespace), spelled out: `\s`
# means something else in Python, in ECMAScript (the JSON Schema dialect) and in Rust (pydantic).
WHITESPACE = "\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"

# Up to 32 digits, spaces, brackets and dashes, after an optional `+`; trimmed, so it neither starts
# nor ends with a space (though a space may follow the `+`).
PHONE_PATTERN = r"^(\+[0-9 ()\-]{2,31}|[0-9()\-][0-9 ()\-]{1,30})[0-9()\-]$"
Phone = Annotated[str, StringConstraints(pattern=PHONE_PATTERN)]

# An ISO 639 language code with an optional region or script: `en`, `zh-Hant`.
LANGUAGE_PATTERN = r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$"
LanguageCode = Annotated[str, StringConstraints(pattern=LANGUAGE_PATTERN)]

# Storable text (see shared.http.storable_text) holds no NUL; JSON strings hold no lone surrogate
# to begin with. When a model trims whitespace, a required non-empty text needs a visible character.
_STORABLE = "^[^\\u0000]*$"
_STORABLE_NOT_BLANK = f"^[^\\u0000]*[^{WHITESPACE}\\u0000][^\\u0000]*$"


def describe_storable_text(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """Add to `model`'s JSON Schema what its storable-text validator checks on every string."""
    trims = bool(model.model_config.get("str_strip_whitespace"))
    for prop in schema.get("properties", {}).values():
        _describe_strings(prop, trims=trims)


def _describe_strings(schema: dict[str, Any], *, trims: bool) -> None:
    for branch in schema.get("anyOf", ()):
        _describe_strings(branch, trims=trims)
    if schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        _describe_strings(schema["items"], trims=trims)
    if schema.get("type") != "string" or {"pattern", "enum", "const", "format"} & schema.keys():
        return  # a pattern, an enumeration or a format admits no NUL already
    schema["pattern"] = _STORABLE_NOT_BLANK if trims and schema.get("minLength", 0) >= 1 else _STORABLE
