"""Consent: who may see what, for which purpose (pure policy; the consent-layer issue builds it)."""
