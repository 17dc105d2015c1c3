from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from stockyard.core.pagination import Page
from stockyard.core.schemas import JSON_NUMBER, NO_NUL, TRIMMED, JsonInt, RequestBody
from stockyard.core.timestamps import StoredInstant

# Large enough for any real stock count, small enough that sums never overflow bigint.
MAX_QUANTITY = 10**12
MAX_BULK_ITEMS = 10_000
# Room for MAX_BULK_ITEMS items of ~1.6 KB of JSON each (a typical item is ~120 bytes).
MAX_BULK_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_RESERVATION_SECONDS = 900

Sku = Field(min_length=1, max_length=100, pattern=TRIMMED)
Code = Field(min_length=1, max_length=64, pattern=TRIMMED)
Text = Field(default=None, max_length=2000, pattern=NO_NUL)
ReorderPoint = Annotated[int, Field(ge=0, le=MAX_QUANTITY), JSON_NUMBER]


class MovementKind(StrEnum):
    """Every kind of ledger entry."""

    RECEIPT = "receipt"
    ISSUE = "issue"
    ADJUSTMENT = "adjustment"
    TRANSFER_OUT = "transfer_out"
    TRANSFER_IN = "transfer_in"
    RESERVATION_COMMIT = "reservation_commit"


class RecordedKind(StrEnum):
    """The kinds a client records directly; transfers and reservations write the others."""

    RECEIPT = "receipt"
    ISSUE = "issue"
    ADJUSTMENT = "adjustment"


class ReservationStatus(StrEnum):
    ACTIVE = "active"
    COMMITTED = "committed"
    RELEASED = "released"
    EXPIRED = "expired"


class ProductCreate(RequestBody):
    sku: str = Sku
    name: str = Field(min_length=1, max_length=200, pattern=NO_NUL)
    description: str | None = Text
    unit: str = Field(default="pcs", min_length=1, max_length=20, pattern=NO_NUL)
    reorder_point: ReorderPoint | None = None


class ProductUpdate(RequestBody):
    name: str | None = Field(default=None, min_length=1, max_length=200, pattern=NO_NUL)
    description: str | None = Text
    unit: str | None = Field(default=None, min_length=1, max_length=20, pattern=NO_NUL)
    reorder_point: ReorderPoint | None = None


class ProductRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    sku: str
    name: str
    description: str | None
    unit: str
    reorder_point: int | None
    archived_at: datetime | None
    version: int
    created_at: datetime
    updated_at: datetime


class ProductPage(Page[ProductRead]):
    pass


class LocationCreate(RequestBody):
    code: str = Code
    name: str = Field(min_length=1, max_length=200, pattern=NO_NUL)


class LocationUpdate(RequestBody):
    name: str | None = Field(default=None, min_length=1, max_length=200, pattern=NO_NUL)


class LocationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    code: str
    name: str
    archived_at: datetime | None
    version: int
    created_at: datetime
    updated_at: datetime


class LocationPage(Page[LocationRead]):
    pass


class MovementCreate(RequestBody):
    """receipt and issue take a positive quantity; adjustment a signed, non-zero one."""

    model_config = ConfigDict(
        # The rule `_check_quantity` enforces, stated in the document so generated clients and
        # fuzzers know it (JSON Schema 2020-12 conditionals, OpenAPI 3.1).
        json_schema_extra={
            "if": {"properties": {"kind": {"const": "adjustment"}}},
            "then": {"properties": {"quantity": {"not": {"const": 0}}}},
            "else": {"properties": {"quantity": {"minimum": 1}}},
        },
    )

    sku: str = Sku
    location: str = Code
    kind: RecordedKind
    quantity: JsonInt = Field(ge=-MAX_QUANTITY, le=MAX_QUANTITY)
    reason: str | None = Text
    reference: str | None = Text
    occurred_at: StoredInstant | None = None

    @model_validator(mode="after")
    def _check_quantity(self) -> MovementCreate:
        if self.kind == "adjustment":
            if self.quantity == 0:
                raise ValueError("an adjustment needs a non-zero quantity")
        elif self.quantity <= 0:
            raise ValueError(f"a {self.kind} needs a positive quantity")
        return self

    @property
    def delta(self) -> int:
        return -self.quantity if self.kind == "issue" else self.quantity


class MovementRead(BaseModel):
    id: uuid.UUID
    sku: str
    location: str
    product_id: uuid.UUID
    location_id: uuid.UUID
    delta: int
    kind: MovementKind
    reason: str | None
    reference: str | None
    occurred_at: datetime
    recorded_at: datetime
    request_id: str | None
    actor_id: uuid.UUID | None
    transfer_id: uuid.UUID | None


class BalanceRead(BaseModel):
    sku: str
    location: str
    on_hand: int
    reserved: int
    available: int


class MovementResult(BaseModel):
    movement: MovementRead
    balance: BalanceRead


class MovementPage(Page[MovementRead]):
    pass


class BulkMovements(RequestBody):
    items: list[MovementCreate] = Field(min_length=1, max_length=MAX_BULK_ITEMS)


class BulkResult(BaseModel):
    inserted: int


class TransferCreate(RequestBody):
    sku: str = Sku
    from_location: str = Code
    to_location: str = Code
    quantity: JsonInt = Field(gt=0, le=MAX_QUANTITY)
    reference: str | None = Text


class TransferRead(BaseModel):
    transfer_id: uuid.UUID
    movements: list[MovementRead]
    balances: list[BalanceRead]


class StockItem(BalanceRead):
    reorder_point: int | None


class StockPage(Page[StockItem]):
    pass


class ReservationCreate(RequestBody):
    sku: str = Sku
    location: str = Code
    quantity: JsonInt = Field(gt=0, le=MAX_QUANTITY)
    expires_in_seconds: JsonInt = Field(default=DEFAULT_RESERVATION_SECONDS, ge=1, le=30 * 86400)
    reference: str | None = Text


class ReservationRead(BaseModel):
    id: uuid.UUID
    sku: str
    location: str
    quantity: int
    status: ReservationStatus
    expires_at: datetime
    reference: str | None
    created_at: datetime
    updated_at: datetime


class ReservationResult(BaseModel):
    reservation: ReservationRead
    balance: BalanceRead
    movement: MovementRead | None = None


class ReservationPage(Page[ReservationRead]):
    pass
