"""The built-in demo upstream: a tiny "enterprise" with a people directory and a ticket desk.

`interlink serve` with no config fronts it in-process. `python -m gateway.demo` serves the same tools
over stdio (and `--http PORT` over streamable HTTP), which is how tests and examples use it as a real
child-process or network upstream.
"""

from __future__ import annotations

import argparse
import itertools
from dataclasses import dataclass, field
from typing import Literal

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import (
    Completion,
    CompletionArgument,
    CompletionContext,
    PromptReference,
    ResourceTemplateReference,
)
from pydantic import BaseModel

Priority = Literal["low", "normal", "high", "urgent"]


class Person(BaseModel):
    employee_id: str
    name: str
    email: str
    department: str
    title: str
    manager_id: str | None


class Ticket(BaseModel):
    ticket_id: str
    title: str
    description: str
    priority: Priority
    requester_id: str | None
    status: Literal["open", "closed"]


PEOPLE = (
    Person(
        employee_id="E100",
        name="Ada Lovelace",
        email="ada@example.com",
        department="Engineering",
        title="CTO",
        manager_id=None,
    ),
    Person(
        employee_id="E101",
        name="Grace Hopper",
        email="grace@example.com",
        department="Engineering",
        title="Staff Engineer",
        manager_id="E100",
    ),
    Person(
        employee_id="E102",
        name="Alan Turing",
        email="alan@example.com",
        department="Research",
        title="Researcher",
        manager_id="E100",
    ),
    Person(
        employee_id="E103",
        name="Katherine Johnson",
        email="katherine@example.com",
        department="Finance",
        title="Controller",
        manager_id="E100",
    ),
)


@dataclass
class TicketDesk:
    tickets: dict[str, Ticket] = field(default_factory=dict)
    counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def create(self, title: str, description: str, priority: Priority, requester_id: str | None) -> Ticket:
        ticket = Ticket(
            ticket_id=f"T-{next(self.counter):04d}",
            title=title,
            description=description,
            priority=priority,
            requester_id=requester_id,
            status="open",
        )
        self.tickets[ticket.ticket_id] = ticket
        return ticket


def build_demo_server() -> MCPServer:
    """A fresh demo server with its own ticket desk (state is per instance, in memory)."""
    server = MCPServer(
        "interlink-demo",
        version="1.0",
        instructions="Example enterprise tools: look people up, open and read helpdesk tickets.",
        log_level="WARNING",
    )
    desk = TicketDesk()
    _add_tools(server, desk)
    _add_resources_and_prompts(server, desk)
    return server


def _add_tools(server: MCPServer, desk: TicketDesk) -> None:
    @server.tool()
    def lookup_person(query: str) -> list[Person]:
        """Find people in the company directory by name, email, department or employee id."""
        q = query.strip().lower()
        return [p for p in PEOPLE if q in " ".join(p.model_dump(exclude_none=True).values()).lower()]

    @server.tool()
    def create_ticket(
        title: str, description: str, priority: Priority = "normal", requester_id: str | None = None
    ) -> Ticket:
        """Open a helpdesk ticket and return it with its new id."""
        return desk.create(title, description, priority, requester_id)

    @server.tool()
    def get_ticket(ticket_id: str) -> Ticket:
        """Read one helpdesk ticket by id (e.g. T-0001)."""
        if ticket_id not in desk.tickets:
            raise ValueError(f"no ticket {ticket_id}")
        return desk.tickets[ticket_id]

    @server.tool()
    async def export_directory(ctx: Context, batches: int = 3) -> dict[str, int]:
        """Export the directory in batches, reporting progress after each batch."""
        for i in range(batches):
            await anyio.sleep(0.01)
            await ctx.report_progress(i + 1, batches, f"batch {i + 1} of {batches}")
        return {"exported": len(PEOPLE), "batches": batches}


def _add_resources_and_prompts(server: MCPServer, desk: TicketDesk) -> None:
    by_id = {p.employee_id: p for p in PEOPLE}

    @server.resource("directory://people/{employee_id}", mime_type="application/json")
    def person(employee_id: str) -> str:
        """One directory entry as JSON."""
        if employee_id not in by_id:
            raise ValueError(f"no person {employee_id}")
        return by_id[employee_id].model_dump_json()

    @server.resource("tickets://open", mime_type="application/json")
    def open_tickets() -> str:
        """All open tickets as a JSON array."""
        return "[" + ",".join(t.model_dump_json() for t in desk.tickets.values() if t.status == "open") + "]"

    @server.prompt()
    def triage_ticket(ticket_id: str) -> str:
        """Ask the model to triage a ticket."""
        return f"Triage helpdesk ticket {ticket_id}: read it, set a priority and suggest an owner."

    async def complete(
        ref: PromptReference | ResourceTemplateReference,
        argument: CompletionArgument,
        context: CompletionContext | None,
    ) -> Completion | None:
        if argument.name == "employee_id":
            return Completion(values=[i for i in by_id if i.startswith(argument.value)])
        return None

    server.completion()(complete)  # type: ignore[no-untyped-call]  # the SDK's decorator is untyped


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gateway.demo", description=__doc__)
    parser.add_argument(
        "--http", type=int, metavar="PORT", help="serve streamable HTTP on 127.0.0.1:PORT/mcp"
    )
    args = parser.parse_args(argv)
    server = build_demo_server()
    if args.http is not None:
        server.run("streamable-http", host="127.0.0.1", port=args.http)
    else:
        server.run("stdio")


if __name__ == "__main__":
    main()
