"""Each private library detail ``boltic_cli._compat`` leans on, checked against the
installed Typer, Click and httpx: a library release that changes one fails here,
by name, instead of somewhere in completion or a bulk send."""

from __future__ import annotations

import ssl
import subprocess
import sys
from typing import Annotated, Any

import httpx
import pytest
import typer

from boltic_cli import _compat

# -- Click -------------------------------------------------------------------------


def test_click_is_the_click_typer_runs_on():
    import typer.core

    click = _compat.click
    assert issubclass(typer.core.TyperGroup, click.Command)
    for name in ("CompletionItem", "add_completion_class", "get_completion_class"):
        assert hasattr(click.shell_completion, name), name
    assert hasattr(click.globals, "get_current_context")


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError):
        _compat.no_such_thing  # noqa: B018


# -- Typer's per-parameter converter (_runtime_param) -------------------------------


def _typer_command() -> Any:
    app = typer.Typer(add_completion=False)

    @app.command()
    def cmd(name: Annotated[str, typer.Option()] = "x", count: int = 1) -> None:
        print(f"{name}:{count}")

    return typer.main.get_command(app)


def test_typer_parameters_start_without_a_converter():
    command = _typer_command()
    params = [p for p in command.params if p.name in ("name", "count")]
    assert len(params) == 2
    for param in params:
        assert hasattr(param, "_runtime_param"), "Typer renamed _runtime_param"
        assert not _compat.has_runtime_converter(param)


def test_a_set_converter_is_the_one_typer_calls(capsys):
    calls: list[Any] = []

    class Upper:
        def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
            calls.append(value)
            return None if value is None else str(value).upper()

    command = _typer_command()
    name = next(p for p in command.params if p.name == "name")
    _compat.set_runtime_converter(name, Upper())
    assert _compat.has_runtime_converter(name)
    command.main(["--name", "abc"], standalone_mode=False)
    assert capsys.readouterr().out.strip() == "ABC:1"
    assert "abc" in calls


def test_a_plain_click_parameter_is_left_alone():
    class ClickParameter:  # a parameter Typer did not make: no _runtime_param
        name = "x"

    assert _compat.has_runtime_converter(ClickParameter())


# -- shell completion ----------------------------------------------------------------


def test_completion_base_classes_are_typers_and_registrable():
    bash, zsh, fish = _compat.completion_base_classes()
    assert (bash.name, zsh.name, fish.name) == ("bash", "zsh", "fish")
    assert all(cls.__module__ == "typer._completion_classes" for cls in (bash, zsh, fish))
    click = _compat.click
    assert all(issubclass(cls, click.shell_completion.ShellComplete) for cls in (bash, zsh, fish))


def test_add_completion_class_registers_by_name():
    click = _compat.click
    bash, _, _ = _compat.completion_base_classes()
    before = click.shell_completion.get_completion_class("bash")

    class Mine(bash):  # type: ignore[misc, valid-type]
        pass

    try:
        _compat.add_completion_class(Mine, "bash")
        assert click.shell_completion.get_completion_class("bash") is Mine
    finally:
        _compat.add_completion_class(before, "bash")


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_script_names_the_program_and_variable(shell):
    script = _compat.completion_script("boltic", "_BOLTIC_COMPLETE", shell)
    assert "boltic" in script and "_BOLTIC_COMPLETE" in script


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_script_fallback_without_typers_private_writer(monkeypatch, shell):
    monkeypatch.setitem(sys.modules, "typer._completion_shared", None)
    script = _compat.completion_script("boltic", "_BOLTIC_COMPLETE", shell)
    assert "_BOLTIC_COMPLETE" in script


def test_completion_base_classes_fallback_is_clicks(monkeypatch):
    pytest.importorskip("click.shell_completion")  # the click package, as older Typers ran on
    import click

    monkeypatch.setitem(sys.modules, "typer._completion_classes", None)
    monkeypatch.setattr(_compat, "_load_click", lambda: click)
    assert _compat.completion_base_classes() == (
        click.shell_completion.BashComplete,
        click.shell_completion.ZshComplete,
        click.shell_completion.FishComplete,
    )


# -- httpx ---------------------------------------------------------------------------


def test_skip_httpx_cli_keeps_httpx_working_without_its_tool():
    code = (
        "import sys\n"
        "from boltic_cli._compat import skip_httpx_cli\n"
        "skip_httpx_cli()\n"
        "import httpx\n"
        "assert sys.modules['httpx._main'] is None\n"
        "assert 'pygments' not in sys.modules, 'httpx loaded its CLI anyway'\n"
        "assert httpx.Client and httpx.Request\n"
        "try:\n"
        "    httpx.main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "else:\n"
        "    raise AssertionError('httpx.main is no longer the stub')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_httpx_client_transport_is_the_one_given():
    transport = httpx.MockTransport(lambda request: httpx.Response(200))
    with httpx.Client(transport=transport) as client:
        assert _compat.httpx_client_transport(client) is transport


def test_httpx_transport_for_url_picks_mounts_then_the_default():
    default = httpx.MockTransport(lambda request: httpx.Response(200))
    mounted = httpx.MockTransport(lambda request: httpx.Response(204))
    with httpx.Client(transport=default, mounts={"http://proxied.test": mounted}) as client:
        assert _compat.httpx_transport_for_url(client, httpx.URL("http://a.test/")) is default
        assert (
            _compat.httpx_transport_for_url(client, httpx.URL("http://proxied.test/x")) is mounted
        )


def test_httpx_transport_for_url_fallback_is_none():
    assert _compat.httpx_transport_for_url(object(), httpx.URL("http://a.test/")) is None  # type: ignore[arg-type]


def test_prepared_post_falls_back_to_client_send_without_the_picker():
    from boltic_cli.client_transport import PreparedPost

    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202, json={"ok": True})

    with httpx.Client(transport=httpx.MockTransport(answer), base_url="http://a.test/") as client:
        prepared = PreparedPost(client, httpx.URL("http://a.test/v1/streams/events"))
        prepared.transport = None  # as with an httpx whose private picker is gone
        response = prepared.send(prepared.request(b"{}", "key-1"))
    assert response.status_code == 202
    assert seen[0].headers["idempotency-key"] == "key-1"


def test_httpx_transport_ssl_context_is_the_verifying_context():
    transport = httpx.HTTPTransport()
    try:
        context = _compat.httpx_transport_ssl_context(transport)
        assert isinstance(context, ssl.SSLContext), "httpx/httpcore moved the SSL context"
        assert context.verify_mode == ssl.CERT_REQUIRED
    finally:
        transport.close()


# -- Typer's bad values: a BadParameter raised from pydantic's ValidationError ------------


def test_a_bad_typer_value_carries_the_pydantic_errors_behind_it():
    from typer.testing import CliRunner

    app = typer.Typer()

    @app.command()
    def main(limit: Annotated[int, typer.Option("--limit", min=1, max=10)] = 1) -> None:
        pass

    result = CliRunner().invoke(app, ["--limit", "0"], standalone_mode=False)
    errors = _compat.pydantic_errors_behind(result.exception)
    assert errors is not None, result.exception
    assert errors[0]["type"] == "greater_than_equal" and errors[0]["ctx"]["ge"] == 1
    assert _compat.pydantic_errors_behind(ValueError("plain")) is None
