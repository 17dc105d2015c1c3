from __future__ import annotations

from stockyard.core.errors import Conflict, NotFound, ValidationFailed


class ProductNotFound(NotFound):
    message = "No such product."


class LocationNotFound(NotFound):
    message = "No such location."


class ReservationNotFound(NotFound):
    message = "No such reservation."


class SkuTaken(Conflict):
    message = "A product with this SKU already exists."


class CodeTaken(Conflict):
    message = "A location with this code already exists."


class Archived(Conflict):
    code = "archived"
    message = "The product or location is archived."


class InsufficientStock(Conflict):
    code = "insufficient_stock"
    message = "Not enough stock: on hand would fall below what is reserved."


class ReservationClosed(Conflict):
    code = "reservation_not_active"
    message = "The reservation is no longer active."


class BulkItemsInvalid(ValidationFailed):
    message = "Some items name a product or location this tenant does not have."


class SameLocation(ValidationFailed):
    message = "A transfer needs two different locations."
