"""AWS Lambda handlers for the producer, query and compactor functions."""
