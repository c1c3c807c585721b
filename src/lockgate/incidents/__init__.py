"""Incidents: opened by an alert or by a person, with severities, response-time targets, a timeline
built from the audit log and the traces, and a postmortem draft."""
