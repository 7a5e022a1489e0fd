"""The configuration file: typos and wrong types fail with file, key path and expectation;
environment variables override; secrets are read from env or file and never echoed."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from gateway.settings import ConfigError, GatewaySettings, HttpUpstream, SecretRef, load_settings
from gateway.upstreams import build_spec, resolve_values

GOOD = """\
listen: {host: 127.0.0.1, port: 9001}
upstreams:
  - {name: crm, transport: stdio, command: crm-server, args: [--readonly]}
  - name: wiki
    transport: http
    url: https://wiki.example/mcp
    headers: {Authorization: {env: WIKI_TOKEN}}
virtual_servers:
  - {name: support, upstreams: [crm, wiki], tools: {exclude: ["crm/delete_*"]}}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "interlink.yaml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, text))
    return str(err.value)


def test_good_file_loads(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, GOOD))
    assert settings.listen.port == 9001
    assert [u.name for u in settings.upstreams] == ["crm", "wiki"]
    wiki = settings.upstreams[1]
    assert isinstance(wiki, HttpUpstream)
    assert isinstance(wiki.headers["Authorization"], SecretRef)
    assert settings.virtual_servers[0].tools.exclude == ["crm/delete_*"]


def test_typo_names_file_key_path_and_problem(tmp_path: Path) -> None:
    message = problems(tmp_path, GOOD.replace("command: crm-server", "comand: crm-server"))
    assert str(tmp_path / "interlink.yaml") in message
    assert "upstreams.0.comand: Extra inputs are not permitted" in message
    assert "upstreams.0.command: Field required" in message


def test_wrong_type_says_what_was_expected_and_what_came(tmp_path: Path) -> None:
    message = problems(tmp_path, GOOD.replace("port: 9001", "port: lots"))
    assert "listen.port: Input should be a valid integer" in message
    assert "(got 'lots')" in message


def test_unknown_transport_is_rejected(tmp_path: Path) -> None:
    message = problems(tmp_path, GOOD.replace("transport: stdio", "transport: carrier-pigeon"))
    assert "upstreams.0" in message and "'stdio', 'http', 'builtin'" in message


def test_virtual_server_naming_an_unknown_upstream(tmp_path: Path) -> None:
    message = problems(tmp_path, GOOD.replace("upstreams: [crm, wiki]", "upstreams: [crm, erp]"))
    assert "virtual server 'support' names unknown upstream(s): erp" in message


@pytest.mark.parametrize("bad", ["crm__x", "CRM", "-crm", ""])
def test_names_that_would_break_namespacing_are_rejected(tmp_path: Path, bad: str) -> None:
    message = problems(
        tmp_path, GOOD.replace("name: crm,", f"name: '{bad}',").replace("[crm, wiki]", "[wiki]")
    )
    assert "upstreams.0.name" in message


def test_invalid_yaml_names_line_and_column(tmp_path: Path) -> None:
    message = problems(tmp_path, "listen: {host: [\n")
    assert message.startswith(f"{tmp_path / 'interlink.yaml'}:")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_settings(tmp_path / "absent.yaml")


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INTERLINK_LISTEN__PORT", "9555")
    monkeypatch.setenv("INTERLINK_LIMITS__MAX_BODY_BYTES", "2048")
    settings = load_settings(write(tmp_path, GOOD))
    assert settings.listen.port == 9555
    assert settings.limits.max_body_bytes == 2048


def test_bad_environment_value_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INTERLINK_LISTEN__PORT", "many")
    assert "listen.port" in problems(tmp_path, GOOD)


def test_secret_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WIKI_TOKEN", "Bearer s3cret")
    (tmp_path / "key").write_text("from-file\n")
    values: dict[str, str | SecretRef] = {
        "a": SecretRef(env="WIKI_TOKEN"),
        "b": SecretRef(file=tmp_path / "key"),
        "c": "plain",
    }
    assert resolve_values(values, "x") == {"a": "Bearer s3cret", "b": "from-file", "c": "plain"}


def test_missing_secret_names_the_variable_never_a_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE_TOKEN", raising=False)
    with pytest.raises(ConfigError, match=r"upstreams.wiki.headers.Authorization: .*NOPE_TOKEN is not set"):
        resolve_values({"Authorization": SecretRef(env="NOPE_TOKEN")}, "upstreams.wiki.headers")


def test_secret_ref_needs_exactly_one_source(tmp_path: Path) -> None:
    message = problems(tmp_path, GOOD.replace("{env: WIKI_TOKEN}", "{env: A, file: /b}"))
    assert "give exactly one of 'env', 'file' or 'value'" in message


def test_inline_secret_value_is_never_shown() -> None:
    ref = SecretRef(value=SecretStr("hunter2"))
    assert "hunter2" not in repr(ref) and "hunter2" not in str(ref)


def test_secret_values_are_not_echoed_in_errors(tmp_path: Path) -> None:
    message = problems(tmp_path, GOOD.replace("{env: WIKI_TOKEN}", "12345678"))
    assert "12345678" not in message


def test_build_spec_resolves_secrets_at_check_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WIKI_TOKEN", raising=False)
    settings = GatewaySettings.model_validate(
        {
            "upstreams": [
                {
                    "name": "w",
                    "transport": "http",
                    "url": "http://x/mcp",
                    "headers": {"A": {"env": "WIKI_TOKEN"}},
                }
            ]
        }
    )
    with pytest.raises(ConfigError, match="WIKI_TOKEN"):
        build_spec(settings.mcp_upstreams[0])


@pytest.mark.parametrize(
    ("virtual_public", "agent_public", "refused"),
    [(True, False, True), (True, True, False), (False, False, False)],
)
def test_a_public_virtual_server_cannot_bridge_a_protected_agent(
    virtual_public: bool, agent_public: bool, refused: bool
) -> None:
    """Anonymous MCP callers must not reach, through a bridge, an agent that needs a token."""
    config = {
        "upstreams": [{"name": "desk-tools", "transport": "a2a", "agent": "desk"}],
        "virtual_servers": [{"name": "open", "upstreams": ["desk-tools"], "public": virtual_public}],
        "a2a_agents": [{"name": "desk", "card_url": "https://desk.example.com/card", "public": agent_public}],
    }
    if not refused:
        GatewaySettings(**config)  # type: ignore[arg-type]
        return
    with pytest.raises(ValueError, match="public virtual server 'open' would expose protected a2a agent"):
        GatewaySettings(**config)  # type: ignore[arg-type]
