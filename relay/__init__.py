"""The relay: oneproxy's hot path as a library (ASGI app, routing, provider
adapters, key-state rules, metering). It imports no Django app or model."""
