"""The AWS layer: clients, S3 transfers, conditional writes, the DynamoDB lock, metrics.

Imports only the pure layer (``format``) and the base (``config``, ``progress``, ``faults``)."""
