"""Case-finding: who would benefit most from care coordination, and why."""
