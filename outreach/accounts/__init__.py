"""Staff accounts: logins with argon2 hashes, database-backed web sessions, login throttling.

The CLI (`outreach users ...`) and the staff web app both call these functions.
"""
