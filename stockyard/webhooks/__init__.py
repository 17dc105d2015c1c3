"""Webhooks: a tenant's endpoints, and its events delivered to them, signed, with retries."""
