"""Pure routing decisions: which channels and addresses get an event, and what it says."""
