"""Table definitions and the logic that reads and writes them."""
