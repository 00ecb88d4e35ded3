"""What a caller may spend: bounds on a document before it runs, and rate limits."""
