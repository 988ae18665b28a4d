"""The flows a worker runs (streams.flow_files): which files of a directory are flows (a
Kubernetes ConfigMap's layout included), each file checked on its own, names and read
topics that collide, a running flow keeping its place, versions, and the integrations a
reload keeps."""

from __future__ import annotations

import os
from pathlib import Path

from streams.flow_files import carry_over, collisions, flow_paths, load_flow_files, read_topics
from streams.loader import content_hash, load_flow
from streams.protections import Protections

FLOW = """\
version: 1
name: {name}
topics: {{input: {topic}.in, enriched: {topic}.out, errors: {topic}.errors}}
settings: {{token: {token}}}
integrations:
  crm: {{base_url: "https://crm.example.com", timeout: {timeout}}}
  scorer: {{base_url: "https://score.example.com"}}
steps:
  - name: push
    integration: crm
    request: {{method: POST, url: /leads, json: {{email: "{{{{ lead.email }}}}"}}}}
  - name: score
    integration: scorer
    request: {{method: GET, url: /score}}
"""


def write(folder: Path, file: str, name: str, topic: str | None = None, timeout: str = "2s",
          token: str = "abcdefgh") -> Path:  # fmt: skip
    path = folder / file
    path.write_text(FLOW.format(name=name, topic=topic or name, timeout=timeout, token=token))
    return path


def test_a_directorys_flow_files_leave_out_cases_and_hidden_entries(tmp_path: Path) -> None:
    write(tmp_path, "b.yaml", "b")
    write(tmp_path, "a.yml", "a")
    (tmp_path / "a.cases.yaml").write_text("cases: []\n")
    (tmp_path / ".hidden.yaml").write_text("nope\n")
    (tmp_path / "notes.txt").write_text("not a flow\n")
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub", "c.yaml", "c")  # not recursive
    files, problems = flow_paths([str(tmp_path)])
    assert [Path(f).name for f in files] == ["a.yml", "b.yaml"] and problems == {}


def test_a_configmap_volume_is_read_through_its_symlinks(tmp_path: Path) -> None:
    """kubelet's layout: the files in a timestamped directory, ``..data`` pointing at it, and
    a symlink per key; only the keys are flows."""
    data = tmp_path / "..2026_12_01_10_00_00.1"
    data.mkdir()
    write(data, "lead.yaml", "lead")
    os.symlink(data.name, tmp_path / "..data")
    os.symlink("..data/lead.yaml", tmp_path / "lead.yaml")
    scan = load_flow_files([str(tmp_path)])
    assert list(scan.flows) == [str(tmp_path / "lead.yaml")] and scan.problems == {}


def test_a_file_with_problems_does_not_keep_the_others_from_loading(tmp_path: Path) -> None:
    good = write(tmp_path, "good.yaml", "good")
    bad = write(tmp_path, "bad.yaml", "bad", timeout="soon")
    scan = load_flow_files([str(tmp_path), str(tmp_path / "gone.yaml")])
    assert list(scan.flows) == [str(good)]
    (problem,) = scan.problems[str(bad)]
    assert str(problem).startswith(f"{bad}:6:46: ") and "integrations.crm.timeout" in str(problem)
    assert [p.message for p in scan.problems[str(tmp_path / "gone.yaml")]] == ["no such file or directory"]


def test_two_flows_may_share_neither_a_name_nor_a_topic_they_read(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", "one", topic="t1")
    same_name = write(tmp_path, "b.yaml", "one", topic="t2")
    same_input = write(tmp_path, "c.yaml", "three", topic="t1")
    scan = load_flow_files([str(tmp_path)])
    assert list(scan.flows) == [str(first)]
    assert "flow 'one' is already run from" in scan.problems[str(same_name)][0].message
    assert "topic t1.in is already read by the flow of" in scan.problems[str(same_input)][0].message


def test_a_running_flow_keeps_its_name_against_a_new_file_that_sorts_first(tmp_path: Path) -> None:
    running = write(tmp_path, "z.yaml", "lead")
    newcomer = write(tmp_path, "a.yaml", "lead", topic="other")
    scan = load_flow_files([str(tmp_path)], running={str(running): load_flow(running)})
    assert list(scan.flows) == [str(running)] and str(newcomer) in scan.problems
    # ... as long as its file exists: a renamed file takes its flow's name over.
    flow = load_flow(running)
    running.unlink()
    scan = load_flow_files([str(tmp_path)], running={str(running): flow})
    assert list(scan.flows) == [str(newcomer)]


def test_collisions_of_a_running_flow_go_by_its_newest_version(tmp_path: Path) -> None:
    kept = write(tmp_path, "a.yaml", "a", topic="t1")
    other = write(tmp_path, "b.yaml", "b", topic="t2")
    renamed = load_flow(write(tmp_path, "a2.yaml", "b", topic="t3"))  # a's file now names flow b
    scanned = {str(kept): renamed, str(other): load_flow(other)}
    found = collisions(scanned, running={str(kept): load_flow(kept)})
    assert list(found) == [str(other)]


def test_the_version_is_the_hash_of_the_files_text(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", "a")
    flow = load_flow(path)
    assert flow.version == content_hash(path.read_text()) and len(flow.version) == 12
    assert load_flow(write(tmp_path, "a.yaml", "a", timeout="3s")).version != flow.version


def test_a_reload_keeps_the_integrations_whose_definition_did_not_change(tmp_path: Path) -> None:
    old = load_flow(write(tmp_path, "a.yaml", "a"))
    new = carry_over(load_flow(write(tmp_path, "a.yaml", "a", timeout="3s")), old)
    assert new.integrations["scorer"] is old.integrations["scorer"]  # its pool, token, limiter
    assert new.integrations["crm"] is not old.integrations["crm"] and new.integrations["crm"].timeout == 3.0
    assert [step.integration for step in new.steps] == [new.integrations["crm"], old.integrations["scorer"]]
    before = Protections(old)
    after = Protections(new, keep=before)
    kept_one, changed_one = (after.for_integration(new.integrations[name]) for name in ("scorer", "crm"))
    assert kept_one is before.for_integration(old.integrations["scorer"])
    assert changed_one is not before.for_integration(old.integrations["crm"])
    # A setting's change is every integration's: its templates and auth may read it.
    changed = carry_over(load_flow(write(tmp_path, "a.yaml", "a", token="zyxwvuts")), old)
    assert all(changed.integrations[n] is not old.integrations[n] for n in ("crm", "scorer"))


def test_a_flow_reads_its_input_retry_tiers_and_notifications(tmp_path: Path) -> None:
    assert read_topics(load_flow(write(tmp_path, "a.yaml", "a"))) == ["a.in"]
