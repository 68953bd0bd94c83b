"""Ingestion adapters (FHIR bundles, HL7 v2 ADT, social care extracts, bulk NDJSON)."""
