"""The errors of administrative operations; their texts are shown to the administrator as is."""

from __future__ import annotations

from postwarden.errors import PostwardenError


class BadInput(PostwardenError):
    """Bad input."""


class NotFound(PostwardenError):
    """No such thing, or not one the acting user may see (the two are told apart by no one)."""


class Forbidden(PostwardenError):
    """The acting user may read this but not change it."""
