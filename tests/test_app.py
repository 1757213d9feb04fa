"""The root command: help, version, usage errors and global option placement."""

from boltic_cli.app import hoist_output_options


def test_version(run_cli):
    from boltic_cli import __version__

    result = run_cli("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"boltic {__version__}"


def test_help_lists_every_group(run_cli):
    from boltic_cli.app import COMMANDS

    result = run_cli("--help")
    assert result.exit_code == 0
    for name in COMMANDS:
        assert f"  {name} " in result.stdout


def test_unknown_option_is_one_line_exit_2(run_cli):
    result = run_cli("--bogus")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "No such option: --bogus" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_output_format_is_usage_error(run_cli):
    result = run_cli("-o", "xml", "config", "list")
    assert result.exit_code == 2
    assert "xml" in result.stderr


def test_hoist_output_options():
    assert hoist_output_options(["sources", "list", "-o", "json"]) == [
        "-o",
        "json",
        "sources",
        "list",
    ]
    assert hoist_output_options(["sources", "list", "--json", "-v"]) == [
        "--json",
        "-v",
        "sources",
        "list",
    ]
    assert hoist_output_options(["api", "GET", "/x", "--", "-o", "json"]) == [
        "api",
        "GET",
        "/x",
        "--",
        "-o",
        "json",
    ]
    assert hoist_output_options(["sources", "list", "--output=yaml"]) == [
        "--output=yaml",
        "sources",
        "list",
    ]


def test_request_timeout_works_after_the_command_too():
    assert hoist_output_options(["sources", "list", "--request-timeout", "2"]) == [
        "--request-timeout",
        "2",
        "sources",
        "list",
    ]
    assert hoist_output_options(["sources", "list", "--request-timeout=2"]) == [
        "--request-timeout=2",
        "sources",
        "list",
    ]
