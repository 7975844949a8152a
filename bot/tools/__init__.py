"""Operator tools: doctor, the local playground, the smoke load."""
