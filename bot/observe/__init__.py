"""Observation: action records, redaction, fingerprints, anomaly rules and incidents."""
