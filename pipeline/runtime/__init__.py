"""The batch runtime: Clarion's own fetch, process and checkpoint loops for the hot topics."""
