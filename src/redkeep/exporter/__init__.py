"""The Prometheus exporter: redis_exporter-compatible metrics, hardening posture, app checks."""
