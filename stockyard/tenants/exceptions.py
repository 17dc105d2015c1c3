from __future__ import annotations

from stockyard.core.errors import Conflict, Forbidden


class SignupDisabled(Forbidden):
    code = "signup_disabled"
    message = "Self-service signup is disabled on this deployment."


class SlugTaken(Conflict):
    message = "This tenant slug is taken."
