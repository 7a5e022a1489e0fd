"""What reaches a downstream A2A agent: never the caller's token. With `auth: {kind: interlink}` the
agent receives a token Interlink signs for the agent's audience, with the caller as subject and
Interlink as the acting party (RFC 8693 `act`), verifiable with Interlink's published keys."""

from __future__ import annotations

import uuid
from contextlib import aclosing
from typing import Any

import httpx
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.types import Message, Part, Role, SendMessageRequest, TaskState
from joserfc import jwt
from joserfc.jwk import KeySet
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.a2a_py_agent import serve_agent
from tests.support import gateway, issued_token

SECRET = "delegation-secret"


class Recorder:
    """Keeps the Authorization header of every request the agent receives (the test's witness)."""

    seen: list[str] = []

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            Recorder.seen.append(dict(scope["headers"]).get(b"authorization", b"").decode())
        await self.app(scope, receive, send)


async def test_agent_gets_a_delegated_token_never_the_callers() -> None:
    Recorder.seen = []
    async with serve_agent(middleware=[Middleware(Recorder)]) as downstream:
        registration: dict[str, Any] = {
            "client_id": "caller",
            "name": "caller",
            "owner": "team",
            "tenant": "acme",
            "secret": {"value": SECRET},
            "audiences": ["a2a/helpdesk"],
            "scopes": ["a2a"],
        }
        async with gateway(
            a2a_agents=[
                {
                    "name": "helpdesk",
                    "card_url": f"{downstream}/.well-known/agent-card.json",
                    "allow_private_network": True,
                    "auth": {"kind": "interlink", "scopes": ["helpdesk.tasks"]},
                }
            ],
            identity={"agents": [registration]},
        ) as base:
            token = await issued_token(base, "caller", SECRET, "a2a/helpdesk", "a2a")
            http = httpx.AsyncClient(headers={"authorization": f"Bearer {token}"}, timeout=30)
            async with aclosing(http):
                card = await A2ACardResolver(http, f"{base}/a2a/helpdesk").get_agent_card()
                client = ClientFactory(ClientConfig(streaming=False, httpx_client=http)).create(card)
                msg = Message(message_id=str(uuid.uuid4()), role=Role.ROLE_USER, parts=[Part(text="echo x")])
                task = [e async for e in client.send_message(SendMessageRequest(message=msg))][-1].task
                assert task.status.state == TaskState.TASK_STATE_COMPLETED
                keys = KeySet.import_key_set((await http.get(f"{base}/oauth2/jwks.json")).json())
    sent = [h for h in Recorder.seen if h]
    assert sent, Recorder.seen
    assert all(token not in h for h in Recorder.seen)  # the caller's token never left
    delegated = jwt.decode(sent[-1].removeprefix("Bearer "), keys)
    claims = delegated.claims
    assert delegated.header["typ"] == "at+jwt"
    assert (claims["sub"], claims["client_id"], claims["act"]) == (
        "caller",
        "interlink",
        {"sub": "interlink"},
    )
    assert claims["aud"] == downstream and claims["scope"] == "helpdesk.tasks" and claims["tenant"] == "acme"
    assert claims["iss"] == base and claims["exp"] - claims["iat"] <= 300
