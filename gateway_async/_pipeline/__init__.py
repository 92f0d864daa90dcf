"""The ingest pipeline's parts; ``gateway_async.pipeline`` is the public face."""
