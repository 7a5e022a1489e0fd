"""The admin HTTP API under `/admin`: the `interlink agents|keys` operations over HTTP, for
automation. Off unless `identity.admin_token` is set; every request must carry it as a Bearer
token (compared in constant time). Answers JSON; secrets appear once, in the response that creates them.

    GET  /admin/agents                      list
    POST /admin/agents                      register (body: NewAgent) -> agent + secret
    GET  /admin/agents/{id}                 show
    POST /admin/agents/{id}/disable|enable  (disable revokes live tokens)
    POST /admin/agents/{id}/rotate-secret   -> secret
    POST /admin/keys/rotate                 publish the next signing key
    GET  /admin/policy                      the active policy's version, SHA-256, rule count, source
    POST /admin/policy/reload               reload it from its source (400 invalid_policy: kept the old)
    GET  /admin/approvals[?status=pending]  held calls, with their arguments
    GET  /admin/approvals/{id}              one held call
    POST /admin/approvals/{id}/approve|deny body {"approver": "name", "note": "why"} (audited)
    GET|POST /admin/a2a-agents, GET|DELETE /admin/a2a-agents/{name}, POST .../{name}/enable|disable
                                            downstream A2A agents registered at run time (audited)
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.approvals import ApprovalError, Approvals, decide_and_record
from gateway.audit import AuditLog
from gateway.policies import PolicyManager, PolicyRejected
from gateway.registry import NewAgent, Registry, RegistryError, describe

log = structlog.get_logger(__name__)

Handler = Callable[[Request, Registry], Awaitable[Any]]


def admin_routes(
    admin_token: str | None,
    registry: Callable[[], Registry],
    policies: PolicyManager | None = None,
    approvals: Approvals | None = None,
    audit: AuditLog | None = None,
    extra: Callable[[Callable[[Handler, int], Callable[[Request], Awaitable[Response]]]], list[Route]]
    | None = None,
) -> list[Route]:
    """The routes; with no admin token configured there are none (404 everywhere under /admin).
    `extra` builds more routes given the guard (`gateway/a2a_remote.py`: `/admin/a2a-agents`)."""
    if not admin_token:
        return []
    expected = f"Bearer {admin_token}".encode()
    extra_routes = extra(lambda h, status: _guarded(expected, registry, h, status)) if extra else []
    policy_routes = _policy_routes(expected, registry, policies) if policies is not None else []
    approval_routes = _approval_routes(expected, registry, approvals, audit) if approvals is not None else []

    return [
        *policy_routes,
        *approval_routes,
        *extra_routes,
        Route("/admin/agents", _guarded(expected, registry, list_agents), methods=["GET"]),
        Route("/admin/agents", _guarded(expected, registry, add_agent, 201), methods=["POST"]),
        Route("/admin/agents/{client_id}", _guarded(expected, registry, show_agent), methods=["GET"]),
        Route(
            "/admin/agents/{client_id}/rotate-secret",
            _guarded(expected, registry, rotate_secret),
            methods=["POST"],
        ),
        Route("/admin/agents/{client_id}/{verb:str}", _guarded(expected, registry, toggle), methods=["POST"]),
        Route("/admin/keys/rotate", _guarded(expected, registry, rotate_keys), methods=["POST"]),
    ]


def _policy_routes(expected: bytes, registry: Callable[[], Registry], manager: PolicyManager) -> list[Route]:

    async def show_policy(request: Request, reg: Registry) -> Any:
        return manager.status(changed=False).as_json() | {"status": "active"}

    async def reload_policy(request: Request, reg: Registry) -> Any:
        try:
            return (await manager.reload("admin_api")).as_json()
        except PolicyRejected as exc:
            raise RegistryError(exc.message, 400, "invalid_policy") from None

    return [
        Route("/admin/policy", _guarded(expected, registry, show_policy), methods=["GET"]),
        Route("/admin/policy/reload", _guarded(expected, registry, reload_policy), methods=["POST"]),
    ]


def _approval_routes(
    expected: bytes, registry: Callable[[], Registry], held: Approvals, audit: AuditLog | None
) -> list[Route]:

    async def list_approvals(request: Request, reg: Registry) -> Any:
        status = request.query_params.get("status", "pending")
        if status not in ("pending", "approved", "denied", "used", "expired", "all"):
            raise RegistryError(f"unknown status {status!r}", 400)
        found = await held.list(None if status == "all" else status)  # type: ignore[arg-type]
        return {"approvals": [a.describe() for a in found]}

    async def show_approval(request: Request, reg: Registry) -> Any:
        found = await held.get(request.path_params["approval_id"])
        if found is None:
            raise RegistryError("no such approval", 404)
        return found.describe()

    async def decide(request: Request, reg: Registry) -> Any:
        verb = request.path_params["verb"]
        if verb not in ("approve", "deny"):
            raise RegistryError("unknown operation", 404)
        try:
            body = await request.json() if await request.body() else {}
        except ValueError:
            raise RegistryError("body must be JSON", 400) from None
        approver = body.get("approver") if isinstance(body, dict) else None
        note = body.get("note") if isinstance(body, dict) else None
        if not isinstance(approver, str) or not approver.strip():
            raise RegistryError('say who decides: {"approver": "name"}', 400)
        try:
            decided = await decide_and_record(
                held,
                audit,
                request.path_params["approval_id"],
                approve=verb == "approve",
                by=approver,
                note=note if isinstance(note, str) else None,
                via="admin_api",
            )
        except ApprovalError as exc:
            raise RegistryError(exc.message, exc.status) from None
        return decided.describe()

    return [
        Route("/admin/approvals", _guarded(expected, registry, list_approvals), methods=["GET"]),
        Route("/admin/approvals/{approval_id}", _guarded(expected, registry, show_approval), methods=["GET"]),
        Route(
            "/admin/approvals/{approval_id}/{verb:str}",
            _guarded(expected, registry, decide),
            methods=["POST"],
        ),
    ]


def _guarded(
    expected: bytes, registry: Callable[[], Registry], handler: Handler, status: int = 200
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            log.warning("admin_request_refused", path=request.url.path)
            return JSONResponse(
                {"error": "invalid_token", "error_description": "admin credential required"},
                status_code=401,
                headers={"www-authenticate": 'Bearer realm="interlink-admin"'},
            )
        try:
            body = await handler(request, registry())
        except RegistryError as exc:
            return JSONResponse(
                {"error": exc.error, "error_description": exc.message}, status_code=exc.status
            )
        except ValidationError as exc:
            problems = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False)]
            return JSONResponse({"error": "invalid_request", "problems": problems}, status_code=422)
        log.info("admin_request", path=request.url.path, method=request.method)
        return JSONResponse(body, status_code=status, headers={"cache-control": "no-store"})

    return endpoint


async def list_agents(request: Request, reg: Registry) -> Any:
    return {"agents": [describe(a) for a in await reg.all()]}


async def add_agent(request: Request, reg: Registry) -> Any:
    try:
        payload = await request.json()
    except ValueError:
        raise RegistryError("body must be JSON", 400) from None
    agent, secret = await reg.add(NewAgent.model_validate(payload), source="api")
    return {"agent": describe(agent), **({"client_secret": secret} if secret else {})}


async def show_agent(request: Request, reg: Registry) -> Any:
    return describe(await reg.get(request.path_params["client_id"]))


async def toggle(request: Request, reg: Registry) -> Any:
    if request.path_params["verb"] not in ("enable", "disable"):
        raise RegistryError("unknown operation", 404)
    enable = request.path_params["verb"] == "enable"
    revoked = await reg.set_enabled(request.path_params["client_id"], enable, source="api")
    return {"client_id": request.path_params["client_id"], "enabled": enable, "revoked_tokens": revoked}


async def rotate_secret(request: Request, reg: Registry) -> Any:
    return {"client_secret": await reg.rotate_secret(request.path_params["client_id"], source="api")}


async def rotate_keys(request: Request, reg: Registry) -> Any:
    key, retired = await reg.rotate_keys()
    return {"published": key.kid, "active_from": key.active_from, "retired": [k.kid for k in retired]}
