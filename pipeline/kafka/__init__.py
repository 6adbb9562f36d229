"""Kafka plumbing: the local broker for development and tests, and topic administration."""
