"""Shared care plans: one per person, owned by the coordinating team, contributed to by
every organisation under its own labels."""
