"""The bucket fixture for the deployment tests (defined in ``bucket.py``)."""

from tests.deploy.bucket import bucket

__all__ = ["bucket"]
