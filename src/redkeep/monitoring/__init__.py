"""Alert rules and the Grafana dashboard, generated from data (alerts.yaml, dashboard.yaml)."""
