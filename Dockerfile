# carejoin: the FHIR gateway and coordination service. PostgreSQL is given by the environment:
#   docker run -e CAREJOIN_DATABASE_URL=postgresql+psycopg://user:pass@db/carejoin -p 8080:8080 carejoin
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    CAREJOIN_ENVIRONMENT=production

WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY carejoin ./carejoin
COPY fhir_gateway ./fhir_gateway
COPY coordination ./coordination
COPY consent ./consent
COPY migrations ./migrations
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /app carejoin \
    && mkdir -p /app/var && chown carejoin /app/var

USER carejoin
EXPOSE 8080
# Applies migrations under a PostgreSQL advisory lock, so replicas can start together.
CMD ["carejoin", "serve", "--host", "0.0.0.0", "--port", "8080"]
