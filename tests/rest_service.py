"""A small real REST service with its own OpenAPI 3.1 document, for the openapi bridge's tests.

It checks the credentials it receives (an API key in a header or the query, a static bearer token,
a bearer token from its own client-credentials token endpoint) and records every request it
receives, so a test can prove what reached it and what did not (the caller's Interlink token).
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Final

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

API_KEY: Final = "rest-api-key-5f1e"
QUERY_KEY: Final = "rest-query-key-93ab"
BEARER: Final = "rest-static-bearer-77c2"
CLIENT_ID: Final = "interlink-at-rest"
CLIENT_SECRET: Final = "rest-client-secret-0d4e"
LOGO: Final = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
INTERNAL: Final = "http://10.20.30.40:8080/db/primary"
"""An internal URL the failing endpoint leaks in its error page (it must not reach a caller)."""
BOMB_BYTES: Final = 64 * 1_048_576
"""What `/bomb`'s gzip body (about 64 KB on the wire) inflates to."""


@cache
def bomb_body() -> bytes:
    return gzip.compress(b"\0" * BOMB_BYTES, 9)


PET: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["id", "name"],
    "properties": {
        "id": {"type": "integer", "readOnly": True},
        "name": {"type": "string", "minLength": 1},
        "tag": {"type": ["string", "null"]},
        "parent": {"$ref": "#/components/schemas/Pet"},
    },
}

DOCUMENT: Final[dict[str, Any]] = {
    "openapi": "3.1.0",
    "info": {"title": "Pet store (test)", "version": "1.0.0"},
    "servers": [{"url": "https://pets.example.com"}],
    "components": {
        "schemas": {
            "Pet": PET,
            "PetList": {
                "type": "object",
                "required": ["pets"],
                "properties": {
                    "pets": {"type": "array", "items": {"$ref": "#/components/schemas/Pet"}},
                    "total": {"type": "integer"},
                },
            },
            "Error": {"type": "object", "properties": {"error": {"type": "string"}}},
        },
        "parameters": {
            "PetId": {"name": "petId", "in": "path", "required": True, "schema": {"type": "string"}},
        },
    },
    "paths": {
        "/pets": {
            "get": {
                "operationId": "listPets",
                "tags": ["pets"],
                "summary": "List pets",
                "parameters": [
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1}},
                    {"name": "tag", "in": "query", "schema": {"type": "array", "items": {"type": "string"}}},
                    {"name": "X-Request-Note", "in": "header", "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": {
                        "description": "pets",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PetList"}}},
                    }
                },
            },
            "post": {
                "operationId": "createPet",
                "tags": ["pets"],
                "summary": "Create a pet",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Pet"}}},
                },
                "responses": {
                    "201": {
                        "description": "created",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Pet"}}},
                    }
                },
            },
        },
        "/pets/{petId}": {
            "parameters": [{"$ref": "#/components/parameters/PetId"}],
            "get": {
                "operationId": "getPet",
                "tags": ["pets"],
                "summary": "Get one pet",
                "responses": {
                    "200": {
                        "description": "the pet",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Pet"}}},
                    },
                    "404": {
                        "description": "no such pet",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                    },
                },
            },
            "delete": {
                "operationId": "deletePet",
                "tags": ["pets", "admin"],
                "responses": {"204": {"description": "deleted"}},
            },
        },
        "/files/{name}": {
            "get": {
                "operationId": "getFile",
                "tags": ["files"],
                "parameters": [
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {"200": {"description": "the file", "content": {"text/plain": {}}}},
            }
        },
        **{
            f"/secure/{kind}": {
                "get": {
                    "operationId": operation,
                    "tags": ["secure"],
                    "responses": {
                        "200": {
                            "description": "who the service thinks is calling",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            }
            for kind, operation in (
                ("header", "whoamiHeader"),
                ("query", "whoamiQuery"),
                ("bearer", "whoamiBearer"),
                ("oauth", "whoamiOAuth"),
            )
        },
        "/boom": {
            "get": {"operationId": "boom", "tags": ["failures"], "responses": {"200": {"description": "x"}}}
        },
        "/slow": {
            "get": {
                "operationId": "slow",
                "tags": ["failures"],
                "parameters": [
                    {"name": "seconds", "in": "query", "schema": {"type": "number", "maximum": 10}}
                ],
                "responses": {"200": {"description": "late"}},
            }
        },
        "/big": {
            "get": {"operationId": "big", "tags": ["failures"], "responses": {"200": {"description": "x"}}}
        },
        "/report": {
            "get": {
                "operationId": "getReport",
                "tags": ["reports"],
                "responses": {"200": {"description": "CSV", "content": {"text/csv": {}}}},
            }
        },
        "/logo": {
            "get": {
                "operationId": "getLogo",
                "tags": ["reports"],
                "responses": {"200": {"description": "PNG", "content": {"image/png": {}}}},
            }
        },
        "/status": {"get": {"tags": ["reports"], "responses": {"200": {"description": "up"}}}},
        **{
            f"/{operation}": {
                "get": {
                    "operationId": operation,
                    "tags": ["hostile"],
                    "responses": {"200": {"description": x}},
                }
            }
            for operation, x in (
                ("corrupt", "a gzip content-encoding whose body is not gzip"),
                ("deep", "JSON nested 100,000 levels deep"),
                ("bomb", f"gzip inflating to {BOMB_BYTES} bytes"),
            )
        },
    },
}


@dataclass
class Seen:
    """One request as the service received it."""

    method: str
    raw_path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class RestService:
    """The service's state: every request received, and the access tokens its endpoint issued."""

    requests: list[Seen] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)
    pets: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {"1": {"id": 1, "name": "Rex", "tag": "dog"}, "2": {"id": 2, "name": "Tom"}}
    )
    spec: bytes | None = None
    """Served at /openapi.json (as YAML) instead of `DOCUMENT`."""

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/openapi.json", self.document),
                Route("/oauth/token", self.token, methods=["POST"]),
                Route("/pets", self.list_pets, methods=["GET"]),
                Route("/pets", self.create_pet, methods=["POST"]),
                Route("/pets/{pet_id}", self.pet, methods=["GET", "DELETE"]),
                Route("/files/{name:path}", self.file),
                Route("/secure/{kind}", self.whoami),
                Route("/boom", self.boom),
                Route("/slow", self.slow),
                Route("/big", self.big),
                Route("/report", self.report),
                Route("/logo", self.logo),
                Route("/status", self.status),
                Route("/corrupt", self.corrupt),
                Route("/deep", self.deep),
                Route("/bomb", self.bomb),
            ]
        )

    async def _seen(self, request: Request) -> None:
        self.requests.append(
            Seen(
                request.method,
                request.scope["raw_path"].decode("latin-1"),
                request.scope["query_string"].decode("latin-1"),
                {k.decode("latin-1"): v.decode("latin-1") for k, v in request.scope["headers"]},
                await request.body(),
            )
        )

    def seen(self, path: str) -> list[Seen]:
        return [r for r in self.requests if r.raw_path.split("?")[0] == path]

    async def document(self, request: Request) -> Response:
        if self.spec is not None:
            return Response(self.spec, media_type="application/yaml")
        return JSONResponse(DOCUMENT)

    async def token(self, request: Request) -> Response:
        """RFC 6749 §4.4 with client_secret_basic."""
        expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        form = await request.form()
        if request.headers.get("authorization") != f"Basic {expected}":
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        if form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        token = f"rest-oauth-token-{len(self.issued) + 1}"
        self.issued.append(token)
        return JSONResponse({"access_token": token, "token_type": "Bearer", "expires_in": 300})

    async def list_pets(self, request: Request) -> Response:
        await self._seen(request)
        tags = request.query_params.getlist("tag")
        pets = [p for p in self.pets.values() if not tags or p.get("tag") in tags]
        limit = int(request.query_params.get("limit", "100"))
        return JSONResponse({"pets": pets[:limit], "total": len(pets)})

    async def create_pet(self, request: Request) -> Response:
        await self._seen(request)
        body = json.loads(self.requests[-1].body)
        pet = {"id": len(self.pets) + 1, **{k: v for k, v in body.items() if k != "id"}}
        self.pets[str(pet["id"])] = pet
        return JSONResponse(pet, status_code=201)

    async def pet(self, request: Request) -> Response:
        await self._seen(request)
        pet_id = request.path_params["pet_id"]
        if pet_id not in self.pets:
            return JSONResponse({"error": f"no pet {pet_id}"}, status_code=404)
        if request.method == "DELETE":
            del self.pets[pet_id]
            return Response(status_code=204)
        return JSONResponse(self.pets[pet_id])

    async def file(self, request: Request) -> Response:
        await self._seen(request)
        return PlainTextResponse(f"file {request.path_params['name']}")

    async def whoami(self, request: Request) -> Response:
        await self._seen(request)
        kind = request.path_params["kind"]
        presented = {
            "header": request.headers.get("x-api-key"),
            "query": request.query_params.get("api_key"),
            "bearer": request.headers.get("authorization"),
            "oauth": request.headers.get("authorization"),
        }.get(kind)
        good = {
            "header": presented == API_KEY,
            "query": presented == QUERY_KEY,
            "bearer": presented == f"Bearer {BEARER}",
            "oauth": presented is not None and presented.removeprefix("Bearer ") in self.issued,
        }.get(kind, False)
        if not good:  # a careless service: it echoes what it got and where it lives
            return PlainTextResponse(f"bad credential {presented!r} for {INTERNAL}", status_code=401)
        return JSONResponse({"ok": True, "credential": kind})

    async def boom(self, request: Request) -> Response:
        await self._seen(request)
        trace = f"Traceback: ConnectionError at {INTERNAL}\n\x1b[31mpool exhausted\x1b[0m " + "x" * 2000
        return PlainTextResponse(trace, status_code=500)

    async def slow(self, request: Request) -> Response:
        await self._seen(request)
        await asyncio.sleep(float(request.query_params.get("seconds", "5")))
        return JSONResponse({"late": True})

    async def big(self, request: Request) -> Response:
        await self._seen(request)
        return JSONResponse({"blob": "y" * 100_000})

    async def report(self, request: Request) -> Response:
        await self._seen(request)
        return Response("name,tag\nRex,dog\n", media_type="text/csv")

    async def logo(self, request: Request) -> Response:
        await self._seen(request)
        return Response(LOGO, media_type="image/png")

    async def status(self, request: Request) -> Response:
        await self._seen(request)
        return JSONResponse({"up": True})

    async def corrupt(self, request: Request) -> Response:
        await self._seen(request)
        headers = {"content-encoding": "gzip"}
        return Response(b"this is not gzip" * 64, media_type="application/json", headers=headers)

    async def deep(self, request: Request) -> Response:
        await self._seen(request)
        return Response(b"[" * 100_000 + b"]" * 100_000, media_type="application/json")

    async def bomb(self, request: Request) -> Response:
        await self._seen(request)
        return Response(bomb_body(), media_type="application/json", headers={"content-encoding": "gzip"})
