"""The beat schedule (filled in by the delivery work)."""
