"""The ``carejoin`` command: serve, db upgrade, demo."""

import logging
import os
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
import uvicorn
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from carejoin.settings import Settings, get_settings
from fhir_gateway import events, migrate
from fhir_gateway.app import default_dispatcher
from fhir_gateway.db import create_engine_for, session_factory_for
from fhir_gateway.identity.models import IdentityRecord, IdentityReview
from fhir_gateway.store import transaction
from fhir_gateway.store.models import ResourceRow

app = typer.Typer(
    help="carejoin: the shared care record and care coordination service.", no_args_is_help=True
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")


SOURCE_HELP = (
    "The registered source system this feed comes from (its id or ODS code; "
    "`carejoin sources list`). Required once any source system is registered."
)


def _registry_enforced_always(settings: Settings) -> bool:
    """As the service decides: enforced even while empty where it trusts an external
    identity provider (production)."""
    return settings.environment == "production" or not settings.auth.development_issuer


def _feed_source(factory: sessionmaker[Session], settings: Settings, name: str | None) -> Any:
    """The active source system a command-line feed names, checked against the registry;
    None where no registry is in force and none is named (trusted, as before)."""
    from fhir_gateway.feeds import registry

    with factory.begin() as session:
        known = registry.registry(session, always_enforced=_registry_enforced_always(settings))
    if name is None:
        if known.enforced:
            raise typer.BadParameter(
                "--source is required: the registry of source systems is in force "
                "(`carejoin sources list`)"
            )
        return None
    system = known.named(name)
    if system is None:
        raise typer.BadParameter(f"{name} is not a registered source system (id or ODS code)")
    if not system.active:
        raise typer.BadParameter(f"Source system {system.id} is not active")
    return system


def _serve(host: str, port: int) -> None:
    settings = get_settings()
    engine = create_engine_for(settings.database_url)
    migrate.upgrade(engine)
    engine.dispose()
    uvicorn.run("carejoin.app:create_service", factory=True, host=host, port=port, log_level="info")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
) -> None:
    """Apply migrations (under a PostgreSQL advisory lock) and serve the API."""
    _serve(host, port)


@app.command()
def mllp(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (MLLP).")] = 2575,
    source: Annotated[str | None, typer.Option(help=SOURCE_HELP)] = None,
) -> None:
    """Receive HL7 v2 ADT messages over MLLP; each is applied, acknowledged and kept.
    Messages whose MSH-4 is not the named source's ODS code are refused (AR)."""
    import asyncio

    from fhir_gateway.access.writer import registered_scope
    from fhir_gateway.app import unit_of_work_factory
    from fhir_gateway.feeds import mllp as listener

    settings = get_settings()
    engine = create_engine_for(settings.database_url)
    migrate.upgrade(engine)
    factory = session_factory_for(engine)
    system = _feed_source(factory, settings, source)
    unit_of_work = unit_of_work_factory(factory)

    async def run() -> None:
        server = await listener.serve(
            unit_of_work,
            host=host,
            port=port,
            base_url=settings.base_url.rstrip("/"),
            max_bytes=settings.max_body_bytes,
            scope=None if system is None else registered_scope(system.ods),
        )
        sender = f" from {system.name} ({system.ods})" if system is not None else ""
        typer.echo(f"Listening for HL7 v2 over MLLP on {host}:{port}{sender}")
        async with server:
            await server.serve_forever()

    try:
        asyncio.run(run())
    finally:
        engine.dispose()


@app.command("import")
def import_(
    files: Annotated[list[Path], typer.Argument(help="FHIR NDJSON files, one resource per line.")],
    batch: Annotated[int, typer.Option(min=1, max=10000, help="Resources per transaction.")] = 1000,
    processes: Annotated[
        int | None,
        typer.Option(
            min=1, help="Worker processes (default: one per CPU on PostgreSQL, one on SQLite)."
        ),
    ] = None,
    source: Annotated[str | None, typer.Option(help=SOURCE_HELP)] = None,
) -> None:
    """Bulk-load FHIR NDJSON (a source's initial load), with a progress bar.

    Resources keep their ids, so importing a file again changes nothing; bad lines are
    reported with their line number and the rest is loaded. With --source, what has no
    meta.source is attributed to that source, and lines of another source are refused.
    Exits 1 if any line failed.
    """
    from fhir_gateway.app import unit_of_work_factory

    settings = get_settings()
    engine = create_engine_for(settings.database_url)
    migrate.upgrade(engine)
    factory = session_factory_for(engine)
    unit_of_work = unit_of_work_factory(factory)
    failed = 0
    try:
        system = _feed_source(factory, settings, source)
        for path in files:
            if not path.is_file():
                raise typer.BadParameter(f"{path} is not a file")
            workers = processes or (
                (os.cpu_count() or 1) if engine.dialect.name == "postgresql" else 1
            )
            if workers > 1:
                report = _import_parallel(path, settings.database_url, batch, workers, system)
            else:
                report = _import_file(path, unit_of_work, batch, system)
            typer.echo(
                f"{path}: {sum(report.created.values())} created, "
                f"{sum(report.updated.values())} updated, "
                f"{sum(report.unchanged.values())} unchanged, {len(report.errors)} refused"
            )
            for line, reason in report.errors[:50]:
                typer.echo(f"  line {line}: {reason}", err=True)
            if len(report.errors) > 50:
                typer.echo(f"  ... and {len(report.errors) - 50} more", err=True)
            failed += len(report.errors)
    finally:
        engine.dispose()
    if failed:
        raise typer.Exit(1)


def _import_parallel(path: Path, url: str, batch: int, workers: int, system: Any) -> Any:
    from fhir_gateway.feeds import bulk

    with path.open("rb") as handle:
        total = sum(1 for line in handle if line.strip())
    with Progress(
        TextColumn(f"[bold]Importing {path.name} ({workers} processes)"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    ) as progress:
        task = progress.add_task("import", total=total)
        return bulk.import_file(
            url,
            str(path),
            now=datetime.now(UTC),
            processes=workers,
            batch_size=batch,
            progress=lambda n: progress.advance(task, n),
            source=system,
        )


def _import_file(path: Path, unit_of_work: Any, batch: int, system: Any) -> Any:
    from fhir_gateway.feeds import bulk

    total = path.stat().st_size
    read = 0
    imported = 0
    with (
        path.open("rb") as handle,
        Progress(
            TextColumn(f"[bold]Importing {path.name}"),
            BarColumn(),
            TextColumn("{task.fields[resources]} resources"),
            TimeRemainingColumn(),
        ) as progress,
    ):
        task = progress.add_task("import", total=total, resources=0)

        def lines() -> Iterator[bytes]:
            nonlocal read
            for raw in handle:
                read += len(raw)
                yield raw  # bytes: a line that is not UTF-8 is refused with its number

        def advance(count: int) -> None:
            nonlocal imported
            imported += count
            progress.update(task, completed=read, resources=imported)

        report = bulk.import_ndjson(
            unit_of_work,
            lines(),
            now=datetime.now(UTC),
            batch_size=batch,
            progress=advance,
            source=system,
        )
        progress.update(task, completed=total)
    return report


@app.command("import-cld")
def import_cld(
    file: Annotated[Path, typer.Argument(help="The council's CLD-shaped extract (CSV).")],
    source: Annotated[str | None, typer.Option(help=SOURCE_HELP)] = None,
) -> None:
    """Load a social care extract: good rows load, bad rows are listed by number, re-loading
    changes nothing, and events withdrawn since an earlier extract of the period are marked
    entered-in-error. With --source, rows of another council (LA_Code) are refused. Exits 1
    if any row was refused."""
    from fhir_gateway.app import unit_of_work_factory
    from fhir_gateway.feeds import social_care

    if not file.is_file():
        raise typer.BadParameter(f"{file} is not a file")
    settings = get_settings()
    engine = create_engine_for(settings.database_url)
    migrate.upgrade(engine)
    try:
        factory = session_factory_for(engine)
        system = _feed_source(factory, settings, source)
        with file.open(encoding="utf-8-sig", newline="") as handle:
            report = social_care.load(
                unit_of_work_factory(factory), handle, now=datetime.now(UTC), source=system
            )
    finally:
        engine.dispose()
    typer.echo(
        f"{file}: {report.rows} rows; {report.loaded} events loaded or changed, "
        f"{report.unchanged} unchanged, {len(report.withdrawn)} withdrawn, "
        f"{len(report.errors)} refused"
    )
    for period in report.withdrawal_skipped:
        typer.echo(f"  withdrawals for {period} held back: rows of the extract were refused")
    for row, reason in report.errors[:50]:
        typer.echo(f"  row {row}: {reason}", err=True)
    if report.errors:
        raise typer.Exit(1)


@app.command("link")
def link_population() -> None:
    """Link every source Patient identity has not filed yet, all at once (initial loads)."""
    from fhir_gateway.identity import batch

    settings = get_settings()
    engine = create_engine_for(settings.database_url)
    migrate.upgrade(engine)
    factory = session_factory_for(engine)
    try:
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
        ) as progress:
            tasks: dict[str, Any] = {}

            def report(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = progress.add_task(f"Identity: {stage}", total=total)
                progress.update(tasks[stage], completed=done, total=total)

            result = batch.link_all(factory, now=datetime.now(UTC), progress=report)
    finally:
        engine.dispose()
    timing = ", ".join(f"{k} {v:.1f}s" for k, v in result.seconds.items())
    typer.echo(
        f"{result.records} source patients filed: {result.persons_created} new persons, "
        f"{result.links} links, {result.reviews} candidates for review "
        f"({result.pairs_scored} pairs scored; {timing})"
    )


@app.command()
def token(
    persona: Annotated[str | None, typer.Option(help="A demo persona (see --list).")] = None,
    user: Annotated[str | None, typer.Option(help="Practitioner id of the user.")] = None,
    org: Annotated[str | None, typer.Option(help="ODS code of the user's organisation.")] = None,
    role: Annotated[
        str | None,
        typer.Option(help="The role selected for the session (with --persona, one it holds)."),
    ] = None,
    purpose: Annotated[
        str | None, typer.Option(help="Purpose of use: TREAT (default), BTG or CASEFIND.")
    ] = None,
    scope: Annotated[
        str | None, typer.Option(help="SMART scopes, e.g. 'user/*.rs' or 'system/*.cruds'.")
    ] = None,
    client: Annotated[str, typer.Option(help="Client id for a system token.")] = "carejoin-cli",
    lifetime: Annotated[int | None, typer.Option(min=60, help="Seconds until expiry.")] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the demo personas.")] = False,
) -> None:
    """Print an access token from the development issuer (never available in production)."""
    from carejoin.personas import personas
    from fhir_gateway.auth.dependencies import development_issuer

    known = personas()
    if list_:
        for item in known.values():
            typer.echo(f"{item.name:18} {item.description}")
        return
    auth = get_settings().auth_settings()
    if not auth.development_issuer:
        raise typer.BadParameter("This deployment trusts an external identity provider")
    claims: dict[str, object]
    if persona is not None:
        if persona not in known:
            raise typer.BadParameter(f"Unknown persona; choose from {', '.join(known)}")
        claims = dict(known[persona].claims)
        if purpose:
            claims["purpose_of_use"] = purpose
        if role:
            held = known[persona].selectable_roles
            if role not in held:
                raise typer.BadParameter(f"{persona} may act as {', '.join(held) or 'no role'}")
            claims["role"] = role
    elif user is not None:
        if org is None or role is None:
            raise typer.BadParameter("A user token needs --org and --role")
        claims = {
            "sub": user,
            "fhirUser": user if "/" in user else f"Practitioner/{user}",
            "organization": org,
            "role": role,
            "purpose_of_use": purpose or "TREAT",
            "scope": scope or "user/*.cruds",
        }
    elif scope is not None and scope.startswith("system/"):
        claims = {"sub": client, "client_id": client, "scope": scope}
        if org:
            claims["organization"] = org
    else:
        raise typer.BadParameter(
            "Give --persona, or --user with --org and --role, or a system --scope"
        )
    if scope and persona is not None:
        claims["scope"] = scope
    try:
        from consent.context import InvalidClaims, context_from_claims

        context_from_claims(claims)
    except InvalidClaims as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(development_issuer(auth).issue(claims, lifetime=lifetime))


client_app = typer.Typer(
    help="Systems registered with the development issuer.", no_args_is_help=True
)
app.add_typer(client_app, name="client")


@client_app.command("register")
def client_register(
    client_id: Annotated[str, typer.Option("--id", help="The client id.")],
    scope: Annotated[str, typer.Option(help="The most it may ask for, e.g. 'system/*.rs'.")],
    jwks: Annotated[Path, typer.Option(help="A file with the client's public keys (JWKS).")],
    org: Annotated[
        str | None, typer.Option(help="ODS code of the organisation it acts for.")
    ] = None,
) -> None:
    """Register a system for SMART Backend Services (client credentials, signed assertion)."""
    import orjson

    from fhir_gateway.auth.clients import register_client

    auth = get_settings().auth_settings()
    if not auth.development_issuer:
        raise typer.BadParameter("This deployment trusts an external identity provider")
    keys = orjson.loads(jwks.read_bytes())
    if not isinstance(keys, dict) or not isinstance(keys.get("keys"), list):
        raise typer.BadParameter('--jwks must be a JSON Web Key Set ({"keys": [...]})')
    register_client(
        auth.development_clients_path,
        client_id=client_id,
        organisation=org,
        scope=scope,
        jwks=keys,
    )
    typer.echo(
        f"Registered {client_id}; it asks {auth.trusted_issuer.rstrip('/')}/token "
        "(restart the service to pick it up)."
    )


@client_app.command("register-public")
def client_register_public(
    client_id: Annotated[str, typer.Option("--id", help="The client id.")],
    redirect_uri: Annotated[
        list[str], typer.Option(help="A redirect URI (exact; give it once for each).")
    ],
) -> None:
    """Register a browser application for the authorization-code flow with PKCE."""
    from fhir_gateway.auth.authorize import register_public_client

    auth = get_settings().auth_settings()
    if not auth.development_issuer:
        raise typer.BadParameter("This deployment trusts an external identity provider")
    try:
        register_public_client(
            auth.development_clients_path, client_id=client_id, redirect_uris=redirect_uri
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(
        f"Registered {client_id}; it signs people in at "
        f"{auth.trusted_issuer.rstrip('/')}/authorize (restart the service to pick it up)."
    )


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply the schema migrations up to REVISION (default: the latest)."""
    settings = get_settings()
    engine = create_engine_for(settings.database_url)
    migrate.upgrade(engine, revision)
    engine.dispose()
    typer.echo(f"Database at {engine.url.render_as_string(hide_password=True)} is up to date.")


@app.command()
def demo(
    people: Annotated[
        int, typer.Option(min=1, help="How many synthetic people to generate.")
    ] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic locality.")] = 2026,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8080,
    load_only: Annotated[
        bool, typer.Option("--load-only", help="Load the demo data, then exit.")
    ] = False,
) -> None:
    """Generate a synthetic locality, load it as each source would send it, then serve."""
    from carejoin.synthetic import generate_locality, person_bundles

    settings = get_settings()
    engine = create_engine_for(settings.database_url)
    migrate.upgrade(engine)
    factory = session_factory_for(engine)
    base_url = settings.base_url.rstrip("/")
    locality = generate_locality(people=people, seed=seed)
    _register_demo_sources(factory)

    def load(bundle: dict[str, object]) -> int:
        with factory.begin() as session:
            responses = transaction.process_transaction(
                session, bundle, now=datetime.now(UTC), base_url=base_url, get_handler=_no_get
            )
        return len(responses)

    load(locality.organizations_bundle)
    loaded = 0
    with Progress(
        TextColumn("[bold]Loading demo people"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    ) as progress:
        task = progress.add_task("load", total=people)
        for n in range(people):
            for _source, bundle in person_bundles(people=people, seed=seed, start=n, stop=n + 1):
                loaded += load(bundle)
            progress.advance(task)
    typer.echo(
        f"Loaded {loaded} resources for {people} synthetic people into {settings.database_url}."
    )
    _link_identities(factory)
    _load_demo_agreement(factory)
    _load_teams(factory, DEMO_TEAMS, settings)
    # The synthetic world's "today" is fixed, so its case-finding is scored as on that day.
    from carejoin.synthetic import REFERENCE_DATE

    _casefind(factory, settings, as_of=REFERENCE_DATE.isoformat())
    engine.dispose()
    if not load_only:
        typer.echo(
            f"Serving on http://{host}:{port}/fhir. Every request but /fhir/metadata needs a "
            "token: `carejoin token --list` shows the personas, e.g.\n"
            "  TOKEN=$(.venv/bin/carejoin token --persona gp)\n"
            f'  curl -H "Authorization: Bearer $TOKEN" http://{host}:{port}/fhir/Patient?_count=5'
        )
        uvicorn.run(
            "carejoin.app:create_service", factory=True, host=host, port=port, log_level="info"
        )


DEMO_AGREEMENT = Path(__file__).resolve().parent / "data" / "demo_agreement.json"


def _register_demo_sources(factory: sessionmaker[Session]) -> None:
    """Register the demo's source systems (GP practices, hospital, council), unless source
    systems are registered already."""
    from carejoin.demo import source_systems
    from fhir_gateway.feeds import registry

    with factory.begin() as session:
        if registry.list_systems(session):
            typer.echo("Source systems are registered already; the demo's were not.")
            return
        saved = registry.put_systems(
            session,
            registry.parse_document(source_systems()),
            by="carejoin demo",
            now=datetime.now(UTC),
        )
    typer.echo(f"Registered {len(saved)} source systems (carejoin sources list).")


sources_app = typer.Typer(
    help="The registry of source systems (docs/feeds.md).", no_args_is_help=True
)
app.add_typer(sources_app, name="sources")


@sources_app.command("load")
def sources_load(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
) -> None:
    """Create or replace the source systems in a JSON file ({id: system} or a list of systems
    with their ids); systems it does not name are left as they are."""
    import orjson

    from fhir_gateway.feeds import registry
    from fhir_gateway.outcomes import OutcomeError

    settings = get_settings()
    engine = create_engine_for(settings.database_url)
    migrate.upgrade(engine)
    try:
        try:
            document = orjson.loads(path.read_bytes())
        except orjson.JSONDecodeError as exc:
            raise typer.BadParameter(f"{path} is not JSON: {exc}") from exc
        try:
            with session_factory_for(engine).begin() as session:
                saved = registry.put_systems(
                    session,
                    registry.parse_document(document),
                    by=f"carejoin sources load {path.name}"[:140],
                    now=datetime.now(UTC),
                )
        except OutcomeError as exc:
            raise typer.BadParameter(exc.message) from exc
    finally:
        engine.dispose()
    for item, created in saved:
        system = item.system
        typer.echo(
            f"{'Registered' if created else 'Replaced'} {system.id}: {system.name} "
            f"({system.kind}, {system.ods}){'' if system.active else ', inactive'}; "
            f"clients: {', '.join(system.clients) or 'none'}"
        )


@sources_app.command("list")
def sources_list() -> None:
    """List the registered source systems and the clients that may send as each."""
    from fhir_gateway.feeds import registry

    settings = get_settings()
    engine = create_engine_for(settings.database_url)
    migrate.upgrade(engine)
    try:
        with session_factory_for(engine).begin() as session:
            found = registry.list_systems(session)
    finally:
        engine.dispose()
    if not found:
        enforced = _registry_enforced_always(settings)
        typer.echo(
            "No source systems are registered: "
            + (
                "no system client may write (production)."
                if enforced
                else "system clients write as their own organisation (development)."
            )
        )
        return
    for item in found:
        system = item.system
        typer.echo(
            f"{system.id:24} {system.ods:8} {system.kind:12} "
            f"{'active' if system.active else 'inactive':8} {system.name}; "
            f"clients: {', '.join(system.clients) or 'none'}"
        )


def _load_demo_agreement(factory: sessionmaker[Session]) -> None:
    """Put the demo's sharing agreement in force, unless one has been loaded already."""
    import orjson

    from fhir_gateway.access.models import SharingAgreementRow
    from fhir_gateway.access.service import load_agreement

    with factory.begin() as session:
        if session.scalar(select(func.count()).select_from(SharingAgreementRow)):
            typer.echo("A sharing agreement is already in force; the demo's was not loaded.")
            return
        agreement = load_agreement(
            session,
            orjson.loads(DEMO_AGREEMENT.read_bytes()),
            loaded_by="carejoin demo",
            now=datetime.now(UTC),
        )
    typer.echo(f"Sharing agreement {agreement.version} is in force ({DEMO_AGREEMENT.name}).")


teams_app = typer.Typer(help="The integrated teams, their practices and members.")
app.add_typer(teams_app, name="teams")
DEMO_TEAMS = Path(__file__).resolve().parent / "data" / "demo_teams.json"


@teams_app.command("load")
def teams_load(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
) -> None:
    """Create or replace the teams in a JSON file ({team id: team}; docs/coordination.md)."""
    settings = get_settings()
    engine = create_engine_for(settings.database_url)
    migrate.upgrade(engine)
    try:
        _load_teams(session_factory_for(engine), path, settings)
    finally:
        engine.dispose()


def _load_teams(factory: sessionmaker[Session], path: Path, settings: Settings) -> None:
    import orjson
    from pydantic import ValidationError

    from coordination.team import service as teams
    from coordination.team.schemas import TeamIn

    document = orjson.loads(path.read_bytes())
    if not isinstance(document, dict):
        raise typer.BadParameter(f"{path} must hold an object of teams by id")
    with factory.begin() as session:
        for team_id, body in document.items():
            try:
                team = TeamIn.model_validate(body)
            except ValidationError as exc:
                raise typer.BadParameter(f"team {team_id}: {exc}") from exc
            saved = teams.put_team(
                session, team_id, team, now=datetime.now(UTC), settings=settings.coordination
            )
            typer.echo(
                f"Team {team_id}: {len(saved.practices)} practices, {len(saved.members)} members"
            )


@app.command()
def casefind(
    as_of: Annotated[
        str | None, typer.Option(help="Score as on this date (YYYY-MM-DD); default today.")
    ] = None,
    chunk: Annotated[int, typer.Option(min=1, max=10000, help="Persons per transaction.")] = 500,
) -> None:
    """Case-finding for the whole registered population (docs/case-finding.md)."""
    settings = get_settings()
    engine = create_engine_for(settings.database_url)
    migrate.upgrade(engine)
    try:
        _casefind(session_factory_for(engine), settings, as_of=as_of, chunk=chunk)
    finally:
        engine.dispose()


def _casefind(
    factory: sessionmaker[Session], settings: Settings, *, as_of: str | None, chunk: int = 500
) -> None:
    from coordination.case_finding import service as case_finding
    from fhir_gateway.access.service import AgreementStore

    now = datetime.now(UTC)
    try:
        day = date.fromisoformat(as_of) if as_of else now.date()
    except ValueError as exc:
        raise typer.BadParameter("--as-of must be a date, YYYY-MM-DD") from exc
    agreement = AgreementStore(default_path=settings.agreement_path).current(factory.begin)
    started = time.perf_counter()
    with Progress(
        TextColumn("[bold]Case-finding"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    ) as progress:
        task = progress.add_task("casefind", total=None)
        report = case_finding.run(
            factory,
            agreement,
            settings.coordination,
            as_of=day,
            now=now,
            chunk=chunk,
            progress=lambda n: progress.advance(task, n),
            total=lambda n: progress.update(task, total=n),
        )
    typer.echo(
        f"Assessed {report.persons} registered people as on {day.isoformat()} in "
        f"{time.perf_counter() - started:.1f}s: {report.found} in a cohort; "
        f"{report.removed} no longer registered left the results."
    )


@app.command()
def relabel(
    batch: Annotated[int, typer.Option(min=100, help="Resources per transaction.")] = 2000,
) -> None:
    """Re-derive consent's labels (sensitivity), relationships and directives for everything
    stored, after the value sets change or when upgrading a database stored before them."""
    from fhir_gateway.access.relabel import relabel_all

    settings = get_settings()
    engine = create_engine_for(settings.database_url)
    migrate.upgrade(engine)
    factory = session_factory_for(engine)
    with factory.begin() as session:
        total = session.scalar(select(func.count()).select_from(ResourceRow)) or 0
    with Progress(
        TextColumn("[bold]Relabelling"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    ) as progress:
        task = progress.add_task("relabel", total=total)
        report = relabel_all(factory, batch=batch, progress=lambda n: progress.advance(task, n))
    engine.dispose()
    typer.echo(
        f"Relabelled {report.resources} resources: {report.sensitive} sensitive, "
        f"{report.relationships} relationships, {report.directives} directives."
    )


def _link_identities(factory: sessionmaker[Session]) -> None:
    """Drain the outbox (identity links every source Patient to a Person) with a progress bar."""
    with factory.begin() as session:
        waiting = events.pending(session)
    # Identity only: an initial load is followed by a batch case-finding run (the demo does
    # it), not by one re-scoring per loaded resource.
    dispatcher = default_dispatcher()
    with Progress(
        TextColumn("[bold]Linking identities (outbox events)"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    ) as progress:
        task = progress.add_task("link", total=waiting)
        done = 0

        def advance(count: int) -> None:
            # Linking writes Persons and Provenances, whose own events join the queue.
            nonlocal done
            done += count
            with factory.begin() as session:
                progress.update(task, completed=done, total=done + events.pending(session))

        dispatcher.drain(factory, batch=500, progress=advance)
    with factory.begin() as session:
        persons = session.scalar(select(func.count(func.distinct(IdentityRecord.person_id))))
        records = session.scalar(select(func.count()).select_from(IdentityRecord))
        reviews = session.scalar(
            select(func.count()).select_from(IdentityReview).where(IdentityReview.status == "open")
        )
    typer.echo(
        f"Identity: {records} source patients form {persons} persons; {reviews} candidate links "
        "wait for review (GET /identity/reviews)."
    )


def _no_get(_session: object, url: str) -> transaction.EntryResponse:
    raise typer.BadParameter(f"demo bundles do not read ({url})")


audit_app = typer.Typer(help="The audit trail: sealing and verification.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


def _age(age: timedelta) -> str:
    seconds = int(age.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h {minutes}m {seconds}s" if hours else f"{minutes}m {seconds}s"


@audit_app.command("seal")
def audit_seal() -> None:
    """Seal every audit event waiting for a block now, and print the new blocks' numbers."""
    from fhir_gateway.audit import sealer

    settings = get_settings()
    engine = create_engine_for(settings.database_url)
    migrate.upgrade(engine)
    try:
        numbers = sealer.seal_all(
            session_factory_for(engine), block_size=settings.gateway().audit_block_size
        )
    finally:
        engine.dispose()
    if numbers:
        typer.echo(f"Sealed {len(numbers)} block(s): {', '.join(str(n) for n in numbers)}")
    else:
        typer.echo("Nothing to seal: every audit event is in a block.")


@audit_app.command("verify")
def audit_verify() -> None:
    """Recompute every sealed block and check the hash chain. Exits 1 if any block is broken;
    events not sealed yet are reported as a warning."""
    from fhir_gateway.audit import sealer

    settings = get_settings()
    engine = create_engine_for(settings.database_url)
    migrate.upgrade(engine)
    try:
        with session_factory_for(engine).begin() as session:
            report = sealer.verify(session, now=datetime.now(UTC))
    finally:
        engine.dispose()
    typer.echo(f"Checked {report.blocks} block(s) holding {report.events} audit event(s).")
    if report.latest_hash is not None:
        typer.echo(f"Latest block {report.latest_block}: hash {report.latest_hash}")
    for block in report.broken:
        typer.echo(f"BROKEN block {block.number}: {'; '.join(block.reasons)}", err=True)
    if report.unsealed:
        oldest = report.oldest_unsealed_age
        age = f"; the oldest is {_age(oldest)} old" if oldest is not None else ""
        typer.echo(f"warning: {report.unsealed} audit event(s) are not sealed yet{age}", err=True)
    if report.broken:
        typer.echo(
            f"The audit trail is NOT intact: {len(report.broken)} broken block(s).", err=True
        )
        raise typer.Exit(1)
    typer.echo("The audit trail is intact.")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    app()


if __name__ == "__main__":
    main()
