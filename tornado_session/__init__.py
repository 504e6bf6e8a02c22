"""Sessions for Tornado."""
