"""What a message says: rendering, SMS segments, the template linter, calendar invites."""
