"""Per-channel delivery agents and the pure pieces they are built from."""
