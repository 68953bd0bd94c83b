"""The data consent decides over: relationships, directives, break-glass grants, the agreement.

Relationships and directives are derived from the record at write time (like the search
index: replaced whole whenever their resource is written, removed when it is deleted);
grants and the agreement are written by their own audited endpoints.
"""
