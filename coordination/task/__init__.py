"""Coordination tasks: FHIR Tasks with the workflow statuses, owners, due dates and a pool."""
