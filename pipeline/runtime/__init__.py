"""The batch runtime: a plain aiokafka consumer group carrying the hot path."""
