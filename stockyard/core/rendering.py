"""Pages the database renders: a list route's rows come back from PostgreSQL as the JSON
documents the API's models would serialize them to, and the response is those documents
joined, with no model built, validated or dumped per row in Python.

A page of 100 movements cost ~1.6 ms of the API's CPU in asyncpg records, dicts, a model per
row and the JSON dump: more than the rest of the request. PostgreSQL writes each row as one
compact JSON object (`row_to_json`, keys in the model's field order) at a few microseconds a
row. The model stays the contract: `document` derives the columns from its fields (names,
order, and an instant's text through `stockyard_instant_text`, migrations 0013 and 0015), refuses a
field type whose JSON it does not know to be the same, and a test holds the bytes of a
rendered page equal to the model's own serialization of the same rows.
"""

from __future__ import annotations

import types
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any, Union, get_args, get_origin

import asyncpg
from fastapi import Response
from pydantic import BaseModel

from stockyard.core.pagination import PageRequest

# What PostgreSQL's JSON of the column is, byte for byte, the JSON pydantic writes of the
# field: a string (escaped alike: `\"`, `\\`, `\n`-style and `\u00XX` controls, the rest
# as is), a number from an integer column, a boolean, a UUID as its hyphenated text, null.
_AS_IS = (str, int, bool, uuid.UUID)


def _column(name: str, annotation: Any, expression: str) -> str:
    if not name.isidentifier() or name != name.lower():
        raise TypeError(f"cannot render {name}: a column name is a lower-case identifier")
    kinds = [kind for kind in get_args(annotation) if kind is not type(None)]
    if get_origin(annotation) not in (Union, types.UnionType):
        kinds = [annotation]
    if len(kinds) != 1:
        raise TypeError(f"cannot render {name}: {annotation!r} is not one type or None")
    (kind,) = kinds
    if kind is datetime:
        return f"stockyard_instant_text({expression}) AS {name}"
    if kind in _AS_IS or (isinstance(kind, type) and issubclass(kind, StrEnum)):
        return f"{expression} AS {name}"
    raise TypeError(f"cannot render {name}: no known-identical JSON for {kind!r}")


# The column a rendering statement selects: the row `document_of` builds, as JSON text.
DOCUMENT = "row_to_json(document)::text AS document"


def document_of(model: type[BaseModel], expressions: Mapping[str, str]) -> str:
    """The join that builds, for each row of a statement, the row `model` serializes: a
    column per field (every field, none other, in order) from its SQL expression. The
    statement joins it after its FROM list and selects `DOCUMENT`."""
    fields = model.model_fields
    if list(expressions) != list(fields):
        raise TypeError(
            f"{model.__name__} is rendered from exactly its fields, in order: {list(fields)}"
        )
    # What would make the model's JSON differ from its fields' values, field by field.
    decorators = model.__pydantic_decorators__
    reshaped = [f for f in fields.values() if f.alias or f.serialization_alias or f.exclude]
    if (
        model.model_computed_fields
        or decorators.field_serializers
        or decorators.model_serializers
        or reshaped
    ):
        raise TypeError(
            f"cannot render {model.__name__}: computed fields, aliases, excluded fields and "
            "serializers change its JSON beyond its fields' values"
        )
    columns = ", ".join(
        _column(name, fields[name].annotation, expression)
        for name, expression in expressions.items()
    )
    return f"CROSS JOIN LATERAL (SELECT {columns}) AS document"


def page_response(
    paging: PageRequest,
    rows: list[asyncpg.Record],
    cursor_of: Callable[[asyncpg.Record], tuple[str, ...]],
) -> Response:
    """The page of rendered rows (each with its `document` column) that `paging` asked for,
    written as `Page.model_dump_json` writes one: the documents, then the next cursor."""
    page, next_cursor = paging.cut(rows, cursor_of)
    items = ",".join([row["document"] for row in page])
    # A cursor is URL-safe base64: its JSON string is the cursor in quotes.
    cursor = "null" if next_cursor is None else f'"{next_cursor}"'
    body = f'{{"items":[{items}],"next_cursor":{cursor}}}'
    return Response(body.encode(), media_type="application/json")
