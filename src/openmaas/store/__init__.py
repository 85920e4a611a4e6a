"""The only layer that speaks SQL."""

from openmaas.store.database import Database

__all__ = ["Database"]
