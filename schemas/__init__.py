"""Clarion's records and the JSON Schema documents producers validate against."""
