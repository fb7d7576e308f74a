"""The authorization hook's types (defined in :mod:`tornadose.http.auth`)."""

from tornadose.http.auth import Action, Authorize, Forbidden, Unauthorized

__all__ = ["Action", "Authorize", "Forbidden", "Unauthorized"]
