"""carejoin: a shared care record and care coordination for integrated care in England."""

__version__ = "0.1.0"
