"""Outcome measures per team, GP practice and month: aggregate only, small counts suppressed."""
