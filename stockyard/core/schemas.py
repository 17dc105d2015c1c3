"""What every request body shares: the document's types are the types accepted.

Bodies are closed (an unknown field is refused rather than silently dropped, so a misspelt
field is noticed), and their numbers and booleans are what JSON says they are: `false` is not
`0`, `"5"` is not `5`, `0` is not `false`. Pydantic's lax mode would accept each of those; its
strict mode cannot be used on a whole body, because FastAPI validates the decoded JSON as Python
objects and strict mode would then refuse `"viewer"` for a role or a string for an instant.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, StrictBool

# PostgreSQL text cannot hold U+0000. Saying so in the schema keeps generated clients, fuzzers
# and the server in agreement, and the refusal is a 422 that names the field.
NO_NUL = r"^[^\x00]*$"
# Identifiers people type and match on (SKUs, location codes): no NUL, no line break, no
# leading or trailing whitespace.
TRIMMED = r"^[^\s\x00](?:[^\x00\n]*[^\s\x00])?$"


def _json_number(value: Any) -> Any:
    # bool is a subclass of int in Python; JSON keeps them apart. `498.0` is an integer in JSON
    # Schema, so floats go on to the integer check, which takes them when they are whole.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("expected a JSON number")
    return value


JSON_NUMBER = BeforeValidator(_json_number)
# Constraints go inside the Annotated, before JSON_NUMBER, when the field is optional
# (`Annotated[int, Field(ge=0), JSON_NUMBER] | None`): a Field on the outside of a wrapped,
# optional type is enforced but left out of the JSON Schema.
JsonInt = Annotated[int, JSON_NUMBER]
JsonBool = StrictBool


class RequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
