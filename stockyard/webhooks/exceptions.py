from __future__ import annotations

from stockyard.core.errors import Conflict, NotFound, ValidationFailed


class WebhookNotFound(NotFound):
    message = "No such webhook endpoint."


class TooManyWebhooks(Conflict):
    code = "too_many_webhooks"
    message = "This tenant has as many webhook endpoints as it may keep; delete one first."


class ReplayTooLarge(ValidationFailed):
    code = "replay_too_large"
    message = "More events match than one replay re-sends: narrow the window (after, until)."
