"""Alerts: rules over the route's live traffic (thresholds and SLO burn rates), evaluated where traces
are loaded; on firing they notify webhooks, roll back, flip the kill switch or open an incident."""
