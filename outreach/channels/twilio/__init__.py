"""Twilio SMS: the client, its error table, its pooled HTTP transport."""
