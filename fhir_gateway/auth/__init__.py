"""Bearer tokens: verification, the development issuer, and the request's access context."""
