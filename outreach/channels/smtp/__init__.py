"""Email over SMTP: the client and its error table."""
