"""Clarion's own Kafka consumers, beside the Faust app where its offset tracking falls short."""
