"""Integrated teams, their aligned GP practices and their members (coordinators, leads)."""
