"""Reservations: stock held for a while, then committed or released (or expired)."""
