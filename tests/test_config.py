"""lockgate.yaml: validation messages a person can act on, and content-hashed, immutable releases."""

from __future__ import annotations

from pathlib import Path

import pytest

from lockgate.config import ConfigError, load_config, load_default_config
from lockgate.config.loader import parse_config
from lockgate.gateway.runtime import register_releases
from tests.harness import LOCKGATE, free_port, store_at

GOOD = """\
version: 1
backends:
  up:
    kind: openai
    base_url: http://127.0.0.1:9/v1
routes:
  echo:
    serve: v1
    releases:
      v1:
        backend: up
        model: m
        system_prompt: Be brief.
"""


def problems(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="lockgate.yaml")
    return info.value


def test_the_embedded_demo_is_valid():
    config = load_default_config()
    route = config.routes["support-bot"]
    assert route.serve == "v1"
    assert route.releases["v1"].backend == "smollm2"
    assert route.releases["v2"].backend == "gemma3"


def test_unknown_key_names_file_line_path_and_fix():
    err = problems(GOOD.replace("        model: m\n", "        model: m\n        temprature: 0.3\n"))
    message = str(err)
    assert "lockgate.yaml:13" in message
    assert "routes.echo.releases.v1.temprature" in message
    assert "remove it, or check its spelling" in message


def test_unknown_backend_reference_lists_the_known_ones():
    err = problems(GOOD.replace("backend: up", "backend: upp"))
    assert err.problems[0].path == "routes.echo.releases.v1.backend"
    assert err.problems[0].line == 11
    assert "unknown backend 'upp'" in str(err) and "use one of: up" in str(err)


def test_serve_must_name_a_declared_release():
    err = problems(GOOD.replace("serve: v1", "serve: v9"))
    assert "'v9' is not one of this route's releases (v1)" in str(err)
    assert err.problems[0].path == "routes.echo"


def test_bad_values_and_kinds_are_explained():
    err = problems(GOOD.replace("kind: openai", "kind: openia"))
    assert "backends.up" in str(err) and "llama_cpp" in str(err)
    err = problems(GOOD.replace("base_url: http://127.0.0.1:9/v1", "base_url: localhost:9"))
    assert "backends.up.base_url" in str(err)
    err = problems(GOOD.replace("        model: m\n", "        model: m\n        timeouts: {total_s: -1}\n"))
    assert "routes.echo.releases.v1.timeouts.total_s" in str(err) and "greater than 0" in str(err)


def test_prompt_template_must_place_the_input():
    err = problems(GOOD.replace("        model: m\n", "        model: m\n        prompt_template: Answer this\n"))
    assert "{input}" in str(err)


def test_not_yaml_and_not_a_mapping():
    err = problems("routes: [unclosed")
    assert "not valid YAML" in str(err) and err.problems[0].line == 1
    assert "must be a mapping" in str(problems("- a\n- b\n"))


def test_missing_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")


def test_release_identity_is_its_content():
    base = parse_config(GOOD, source="a").routes["echo"].releases["v1"]
    same = parse_config(GOOD.replace("routes:", "# a comment\nroutes:"), source="b").routes["echo"].releases["v1"]
    described = parse_config(
        GOOD.replace("        model: m\n", "        model: m\n        description: notes\n"), source="c"
    ).routes["echo"].releases["v1"]
    changed = parse_config(GOOD.replace("Be brief.", "Be briefer."), source="d").routes["echo"].releases["v1"]
    assert base.content_hash() == same.content_hash() == described.content_hash()
    assert changed.content_hash() != base.content_hash()


def test_changing_a_release_makes_a_new_version_and_old_content_keeps_its_own(tmp_path: Path):
    store = store_at(tmp_path / "db.sqlite3")
    store.migrate()
    first = register_releases(parse_config(GOOD, source="a"), store)["echo"]["v1"]
    again = register_releases(parse_config(GOOD, source="a"), store)["echo"]["v1"]
    edited = register_releases(parse_config(GOOD.replace("Be brief.", "Be briefer."), source="b"), store)["echo"]["v1"]
    reverted = register_releases(parse_config(GOOD, source="a"), store)["echo"]["v1"]
    assert (first.release_id, again.release_id) == ("echo@1", "echo@1")
    assert edited.release_id == "echo@2" and edited.content["system_prompt"] == "Be briefer."
    assert reverted.release_id == "echo@1"
    assert [r.version for r in store.list_releases("echo")] == [1, 2]


def test_serve_refuses_a_bad_config_with_exit_2_and_the_report(tmp_path: Path):
    import subprocess

    bad = tmp_path / "lockgate.yaml"
    bad.write_text(GOOD.replace("backend: up", "backend: nope"))
    result = subprocess.run([*LOCKGATE, "serve", "--config", str(bad), "--port", str(free_port()),
                             "--data-dir", str(tmp_path / "d")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"{bad}:11: routes.echo.releases.v1.backend: unknown backend 'nope'" in result.stderr
    assert "Traceback" not in result.stderr
