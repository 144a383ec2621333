"""Campaigns: definition files, syncing them, enrolling contacts, previews."""
