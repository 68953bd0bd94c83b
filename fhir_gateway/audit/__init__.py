"""The audit trail: insert-only AuditEvent records, sealed in hash-chained blocks."""
