"""The staff web app: server-rendered pages behind a login (see README, "Staff web app")."""
