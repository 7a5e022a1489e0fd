"""`transport: openapi` upstreams: load the OpenAPI document, resolve the credentials, build the
provider (adapters/openapi).

Where a document comes from decides how a failure shows:
- a **file** (relative to the configuration file's directory) is read and converted at start-up;
  a missing, oversized, unparsable or non-OpenAPI-3 file fails start-up and `interlink check`
  with a ConfigError naming the upstream;
- an **http(s) URL** is fetched when the gateway starts, as a hostile URL (`gateway/fetch.py`:
  public https addresses only unless `allow_private_network`, no redirects, `MAX_DOCUMENT_BYTES`,
  `FETCH_TIMEOUT_S`); when it cannot be fetched or converted the gateway still starts, `/readyz`
  shows the upstream in `backoff` with the reason, and the document is fetched again with
  exponential backoff (at most `health_interval_s` apart) until it loads. A fetched document is
  parsed and converted in a worker thread: that takes seconds for a large one (a 10 MB YAML
  document of 3,000 operations: about 10 s), during which the gateway keeps serving. (A file
  document is read by `create_app`, before the server starts.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

import anyio
import yaml

from adapters.mcp.credentials import BearerAuth, TokenSource, client_credentials
from adapters.openapi.convert import Conversion, Selection, convert
from adapters.openapi.provider import OpenApiProvider, RestOptions
from adapters.openapi.schema import OpenApiError
from gateway.fetch import FetchError, fetch_bytes
from gateway.settings import ApiKeyAuth, BearerTokenAuth, ConfigError, OpenApiUpstream
from gateway.upstreams import resolve_values

MAX_DOCUMENT_BYTES: Final = 32 * 1_048_576
"""Largest OpenAPI document read (GitHub's REST API description is about 13 MB)."""
FETCH_TIMEOUT_S: Final = 30.0
REMEMBERED_TOKENS: Final = 4
"""OAuth access tokens kept (newest last) to redact from error excerpts."""


def build_openapi(upstream: OpenApiUpstream, config_dir: Path | None) -> OpenApiProvider:
    """The provider of one openapi upstream; a file document is loaded and converted now."""
    options = rest_options(upstream)
    if is_url(upstream.spec):
        url, allow_private, chosen = upstream.spec, upstream.allow_private_network, selection(upstream)

        async def fetched() -> Conversion:
            try:
                body = await fetch_bytes(
                    url,
                    allow_private=allow_private,
                    max_bytes=MAX_DOCUMENT_BYTES,
                    accept="application/json, application/yaml;q=0.9, */*;q=0.5",
                    timeout_s=FETCH_TIMEOUT_S,
                )
            except FetchError as exc:
                raise OpenApiError(f"cannot fetch it ({exc})") from None
            return await anyio.to_thread.run_sync(read_document, body, chosen, abandon_on_cancel=True)

        return OpenApiProvider(upstream.name, fetched, options, eager=upstream.start == "eager")
    conversion = load_file(upstream, config_dir)

    async def loaded() -> Conversion:
        return conversion

    return OpenApiProvider(upstream.name, loaded, options)


def load_file(upstream: OpenApiUpstream, config_dir: Path | None) -> Conversion:
    """Read and convert a file document; ConfigError naming the upstream and the problem."""
    path = Path(upstream.spec)
    if not path.is_absolute() and config_dir is not None:
        path = config_dir / path
    where = f"upstreams.{upstream.name}.spec"
    try:
        if path.stat().st_size > MAX_DOCUMENT_BYTES:
            raise ConfigError(f"{where}: {path} is larger than {MAX_DOCUMENT_BYTES} bytes")
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {path}: {exc.strerror}") from None
    try:
        return read_document(data, selection(upstream))
    except OpenApiError as exc:
        raise ConfigError(f"{where}: {path}: {exc}") from None


def read_document(data: bytes, chosen: Selection) -> Conversion:
    """Parse and convert a document (CPU-bound: seconds for a large one); OpenApiError only."""
    return convert(parse_document(data), chosen)


MAX_YAML_NODES: Final = 2_000_000
"""Most values a YAML document may hold once its aliases are expanded (a few-kB document of nested
aliases would otherwise expand to billions: the "billion laughs")."""


def plain_json(value: Any, budget: list[int], path: tuple[int, ...] = ()) -> Any:
    """YAML's data as plain JSON data: aliases expanded within `budget[0]` values, a self-containing
    value refused, dates and other scalars as strings, mapping keys as strings."""
    budget[0] -= 1
    if budget[0] < 0:
        raise OpenApiError(f"the document holds more than {MAX_YAML_NODES} values once YAML aliases expand")
    if isinstance(value, dict | list):
        if id(value) in path:
            raise OpenApiError("the document holds a value that contains itself (a YAML alias cycle)")
        inner = (*path, id(value))
        if isinstance(value, list):
            return [plain_json(v, budget, inner) for v in value]
        return {str(k): plain_json(v, budget, inner) for k, v in value.items()}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)  # dates, timestamps, binary: as text


def parse_document(data: bytes) -> Any:
    """JSON, or else YAML (a superset); OpenApiError when it is neither."""
    text = data.decode("utf-8-sig", errors="replace")
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except ValueError:
            pass  # perhaps YAML's flow style
        except RecursionError:
            raise OpenApiError("the document is nested too deeply") from None
    try:
        loaded = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise OpenApiError(f"neither JSON nor YAML{at}") from None
    except RecursionError:
        raise OpenApiError("the document is nested too deeply") from None
    except ValueError:  # a YAML scalar Python refuses, e.g. an integer of more than 4300 digits
        raise OpenApiError("the document holds a value that cannot be read (a number too long?)") from None
    try:
        return plain_json(loaded, [MAX_YAML_NODES])
    except RecursionError:
        raise OpenApiError("the document is nested too deeply") from None


def selection(upstream: OpenApiUpstream) -> Selection:
    return Selection(
        include_tags=upstream.include_tags,
        exclude_tags=upstream.exclude_tags,
        include_operations=upstream.include_operations,
        exclude_operations=upstream.exclude_operations,
    )


def rest_options(upstream: OpenApiUpstream) -> RestOptions:
    """Interlink's credentials for the REST system, read now (a missing secret fails start-up)."""
    where = f"upstreams.{upstream.name}"
    headers = {k.lower(): v for k, v in resolve_values(upstream.headers, f"{where}.headers").items()}
    query: dict[str, str] = {}
    secrets: list[str] = [*headers.values()]
    auth = upstream.auth
    bearer: BearerAuth | None = None
    if isinstance(auth, ApiKeyAuth):
        value = resolve_values({"value": auth.value}, f"{where}.auth")["value"]
        (headers if auth.location == "header" else query)[
            auth.name.lower() if auth.location == "header" else auth.name
        ] = value
        secrets.append(value)
    elif isinstance(auth, BearerTokenAuth):
        token = resolve_values({"token": auth.token}, f"{where}.auth")["token"]
        headers["authorization"] = f"Bearer {token}"
        secrets.append(token)
    elif auth is not None:
        secret = resolve_values({"client_secret": auth.client_secret}, f"{where}.auth")["client_secret"]
        secrets.append(secret)
        source = client_credentials(
            upstream.name,
            auth.token_url,
            auth.client_id,
            secret,
            scope=auth.scope,
            resource=auth.resource or upstream.base_url,
            timeout_s=upstream.connect_timeout_s,
        )
        bearer = BearerAuth(_remembering(source, secrets))
    return RestOptions(
        base_url=upstream.base_url,
        headers=headers,
        query=query,
        auth=bearer,
        call_timeout_s=upstream.call_timeout_s,
        connect_timeout_s=upstream.connect_timeout_s,
        max_response_bytes=upstream.max_response_bytes,
        secrets=secrets,
        retry_max_s=upstream.health_interval_s,
    )


def _remembering(source: TokenSource, secrets: list[str]) -> TokenSource:
    """`source`, noting each token it hands out among `secrets` (to keep it out of excerpts)."""
    fixed = len(secrets)

    async def fetch() -> tuple[str, float]:
        token, expiry = await source()
        remembered = [*secrets[fixed:], token][-REMEMBERED_TOKENS:]
        secrets[fixed:] = remembered
        return token, expiry

    return fetch


def is_url(spec: str) -> bool:
    return spec.startswith(("http://", "https://"))


def check_openapi(upstream: OpenApiUpstream, config_dir: Path | None) -> str:
    """For `interlink check`: a file document is converted (ConfigError when it cannot be); a URL is
    fetched and converted too, but one that cannot be reached only warns (the gateway would start
    and retry)."""
    rest_options(upstream)  # every secret resolves
    if not is_url(upstream.spec):
        conversion = load_file(upstream, config_dir)
        line = f"{upstream.name}: {len(conversion.tools)} tool(s) from OpenAPI {conversion.version}"
        if conversion.skipped:
            line += f"; {len(conversion.skipped)} operation(s) skipped, e.g. {conversion.skipped[0]}"
        return line
    provider = build_openapi(upstream.model_copy(update={"start": "eager"}), config_dir)

    async def probe() -> str:
        await provider.start()
        try:
            status = provider.status()
            if status.state != "ready":
                return f"{upstream.name}: warning: {status.last_error} (the gateway will retry)"
            return f"{upstream.name}: {len(await provider.tools())} tool(s), {status.protocol_version}"
        finally:
            await provider.stop()

    return anyio.run(probe)
