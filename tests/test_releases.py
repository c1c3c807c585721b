"""Release identity and diffs, through the store and the CLI a release owner uses."""

from __future__ import annotations

import json
from pathlib import Path

from lockgate.releases.diff import diff_contents, flatten
from tests.harness import run_cli

CONFIG = """
version: 1
backends:
  up: {{kind: openai, base_url: "http://127.0.0.1:9/v1"}}
routes:
  echo:
    serve: v1
    releases:
      v1:
        backend: up
        model: m
        system_prompt: {prompt}
        params: {{temperature: {temperature}}}
"""


def test_flatten_and_diff_name_every_changed_path():
    old = {"model": "a", "params": {"temperature": 0.2, "stop": ["x"]}, "fallbacks": [{"static": "s"}]}
    new = {"model": "b", "params": {"temperature": 0.2}, "fallbacks": [{"static": "s"}], "retrieval": {"k": 3}}
    assert flatten(old)["params.stop.0"] == "x"
    changes = {c.path: c for c in diff_contents(old, new)}
    assert set(changes) == {"model", "params.stop.0", "retrieval.k"}
    assert (changes["model"].kind, changes["params.stop.0"].kind, changes["retrieval.k"].kind) == (
        "changed", "removed", "added")
    assert changes["model"].describe() == '~ model: "a" -> "b"'
    assert diff_contents(old, old) == []


def test_release_create_list_show_and_diff_through_the_cli(tmp_path: Path):
    config = tmp_path / "lockgate.yaml"
    data = tmp_path / "data"
    config.write_text(CONFIG.format(prompt="Be brief.", temperature=0.2))
    created = run_cli("release", "create", data_dir=data, config=config).stdout
    assert "echo@1" in created and "new" in created
    again = run_cli("release", "create", data_dir=data, config=config).stdout
    assert "echo@1" in again and "unchanged" in again
    config.write_text(CONFIG.format(prompt="Be very brief.", temperature=0.7))
    assert "echo@2" in run_cli("release", "create", data_dir=data, config=config).stdout

    listing = run_cli("release", "list", data_dir=data, config=config).stdout
    assert "echo@1" in listing and "echo@2" in listing and "serving" in listing.splitlines()[-1]

    shown = json.loads(run_cli("release", "show", "echo@1", data_dir=data).stdout)
    assert shown["release"] == "echo@1" and shown["content"]["system_prompt"] == "Be brief."

    diff = run_cli("release", "diff", "echo@1", "echo@2", data_dir=data).stdout
    assert '~ system_prompt: "Be brief." -> "Be very brief."' in diff
    assert "~ params.temperature: 0.2 -> 0.7" in diff
    assert "model" not in diff.replace("echo@", "")

    missing = run_cli("release", "show", "echo@9", data_dir=data, check=False)
    assert missing.returncode == 1 and "No release echo@9" in missing.stderr


def test_release_ids_parse_only_in_their_one_form():
    from lockgate.releases import parse_release_id

    assert parse_release_id("support-bot@12") == ("support-bot", 12)
    assert parse_release_id("support-bot:v2") is None
    assert parse_release_id("support-bot@") is None
    assert parse_release_id("@3") is None
    assert parse_release_id("support-bot@two") is None
