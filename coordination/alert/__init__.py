"""Alerts: admissions, discharges and other changes reaching the person's coordinator."""
