"""Charging sessions: metering and re-pricing corrections."""
