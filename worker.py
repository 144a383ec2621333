"""The Celery app (filled in by the delivery work)."""
