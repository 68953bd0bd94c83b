"""Care coordination: teams, case-finding, assignment, care plans, tasks, alerts, outcomes."""
