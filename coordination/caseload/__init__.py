"""Coordination episodes: who coordinates whom, proposals, the waiting queue, worklists."""
