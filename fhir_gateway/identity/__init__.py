"""Identity: who is who across sources (the master patient index).

The pure part (``nhs``, ``demographics``, ``scoring``) takes plain data and imports neither
SQLAlchemy nor FastAPI, so every rule can be tested exhaustively without a database.
"""
