"""The permissions `partita auth` generates, as pure data (the server-side tests are in
tests/integration/test_security.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from partita.actors.cli import main
from partita.transport import Layout
from partita.transport.auth import (
    AuthDirectory,
    AuthError,
    Identity,
    Role,
    account_of,
    boundary,
    new_nkey,
    permissions,
    render_accounts,
)

LAYOUT = Layout()


def _worker(**grants: object) -> Identity:
    fields: dict[str, object] = {"tasks": ("get-inventory",), "domains": ("john",), **grants}
    return Identity(name="inventory-app", role=Role.WORKER, public_key=new_nkey()[1], **fields)  # type: ignore[arg-type]


def test_a_worker_is_granted_exactly_its_pairs_and_its_own_inbox() -> None:
    worker = _worker()
    perms = permissions(worker, LAYOUT)
    assert perms.subscribe == (f"_INBOX_{worker.public_key}.>",)
    assert "$JS.API.CONSUMER.MSG.NEXT.PARTITA_TASKS.task@get-inventory@john" in perms.publish
    assert "$JS.ACK.PARTITA_TASKS.task@get-inventory@john.>" in perms.publish
    assert "partita.wf.*.result.get-inventory.john" in perms.publish
    joined = " ".join(perms.publish)
    for absent in ("CREATE.PARTITA_TASKS", "@_", ".start ", ".cmd", "$O.", "$KV.partita_definitions"):
        assert absent not in f"{joined} ", absent
    assert not any(subject in (">", "$JS.API.>") for subject in perms.publish)
    # Stream info would list every subject of a stream (workflow ids, task ids): only the limits bucket's.
    assert [s for s in perms.publish if ".STREAM.INFO." in s] == ["$JS.API.STREAM.INFO.KV_partita_limits"]
    assert not any(".CONSUMER.DELETE." in s for s in perms.publish)


def test_grants_widen_a_worker_only_as_asked() -> None:
    perms = permissions(_worker(domains=("john", None), start_workflows=True, payloads=True), LAYOUT)
    assert "$JS.API.CONSUMER.MSG.NEXT.PARTITA_TASKS.task@get-inventory@_" in perms.publish
    assert "partita.wf.*.result.get-inventory._" in perms.publish
    assert "partita.wf.*.start" in perms.publish
    assert "$O.partita_payloads.>" in perms.publish


def test_task_types_that_are_not_subject_tokens_are_escaped_in_every_grant() -> None:
    perms = permissions(_worker(tasks=("a.b*c >",)), LAYOUT)
    assert "partita.wf.*.result.a=2Eb=2Ac=20=3E.john" in perms.publish
    assert all("a.b" not in subject for subject in perms.publish)


def test_roles_differ_in_what_they_may_write() -> None:
    key = new_nkey()[1]
    client = permissions(Identity(name="c", role=Role.CLIENT, public_key=key), LAYOUT).publish
    admin = permissions(Identity(name="a", role=Role.ADMIN, public_key=key), LAYOUT).publish
    node = permissions(Identity(name="n", role=Role.NODE, public_key=key), LAYOUT).publish
    assert "partita.wf.*.start" in client
    assert "$KV.partita_definitions.>" not in client
    assert "$KV.partita_definitions.>" in admin
    assert node == (">",)


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"name": "has space", "role": Role.CLIENT}, "identity name"),
        ({"name": "w", "role": Role.WORKER}, "at least one task type"),
        ({"name": "w", "role": Role.WORKER, "tasks": ("t",)}, "at least one domain"),
        ({"name": "c", "role": Role.CLIENT, "tasks": ("t",)}, "workers only"),
    ],
)
def test_bad_identities_are_refused_with_the_reason(fields: dict[str, object], error: str) -> None:
    with pytest.raises(AuthError, match=error):
        Identity(public_key=new_nkey()[1], **fields)  # type: ignore[arg-type]


def test_names_must_be_unique_in_one_account() -> None:
    key = new_nkey()[1]
    twice = [Identity(name="x", role=Role.CLIENT, public_key=key), Identity(name="x", role=Role.ADMIN, public_key=key)]
    with pytest.raises(AuthError, match="unique"):
        render_accounts(twice, LAYOUT)


def test_the_auth_command_writes_seeds_identities_and_the_accounts_file(tmp_path: Path) -> None:
    auth = tmp_path / "auth"
    assert main(["auth", "--dir", str(auth), "init"]) == 0
    assert main(["auth", "--dir", str(auth), "add-worker", "inv", "--task", "get-inventory", "--domain", "john"]) == 0
    assert main(["auth", "--dir", str(auth), "add-worker", "inv", "--task", "x"]) == 2  # exists: not replaced
    directory = AuthDirectory(auth, LAYOUT)
    assert [(i.name, i.role) for i in directory.identities()] == [
        ("node", Role.NODE),
        ("admin", Role.ADMIN),
        ("client", Role.CLIENT),
        ("inv", Role.WORKER),
    ]
    seed = directory.seed_file("inv")
    assert seed.stat().st_mode & 0o777 == 0o600
    assert seed.read_text().startswith("SU")
    accounts = directory.accounts_file.read_text()
    assert accounts.count("nkey: U") == 4
    assert "task@get-inventory@john" in accounts
    assert main(["auth", "--dir", str(auth), "remove", "inv"]) == 0
    assert not seed.exists()
    assert "task@get-inventory@john" not in directory.accounts_file.read_text()
    with pytest.raises(AuthError, match="not 'other'"):
        AuthDirectory(auth, Layout(prefix="other")).identities()


def test_render_writes_the_accounts_again_and_refuses_an_empty_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    auth = tmp_path / "auth"
    assert main(["auth", "--dir", str(auth), "render"]) == 2
    assert "partita auth init" in capsys.readouterr().err
    assert main(["auth", "--dir", str(auth), "init"]) == 0
    directory = AuthDirectory(auth, LAYOUT)
    directory.accounts_file.write_text("accounts { PARTITA: { users: [] } }\n")  # as an older version wrote it
    assert main(["auth", "--dir", str(auth), "render"]) == 0
    assert "3 identities" in capsys.readouterr().out
    assert directory.accounts_file.read_text() == render_accounts(directory.identities(), LAYOUT)
    assert main(["auth", "--dir", str(auth), "permissions", "client"]) == 0
    assert '"account": "PARTITA-client-client"' in capsys.readouterr().out


def test_every_identity_but_the_nodes_imports_exactly_its_permissions_from_the_engine() -> None:
    key = new_nkey()[1]
    node = Identity(name="n", role=Role.NODE, public_key=key)
    worker = _worker()
    client = Identity(name="c", role=Role.CLIENT, public_key=new_nkey()[1])
    assert boundary(node, LAYOUT) is None
    assert account_of(node, LAYOUT) == "PARTITA"
    for identity in (worker, client):
        b = boundary(identity, LAYOUT)
        perms = permissions(identity, LAYOUT)
        assert b is not None
        assert (b.account, b.services, b.streams) == (account_of(identity, LAYOUT), perms.publish, perms.subscribe)
    text = render_accounts([node, worker, client], LAYOUT)
    engine, rest = text.split('"PARTITA-worker-inventory-app": {', 1)
    assert "jetstream: enabled" in engine
    assert "jetstream" not in rest  # no stream outside the engine's account
    assert f"nkey: {key}" in engine
    assert f"nkey: {worker.public_key}" in rest
    # An export names the accounts that may import it, and only those: the worker's pull is not the client's.
    pull = f"$JS.API.CONSUMER.MSG.NEXT.{LAYOUT.tasks_stream}.task@get-inventory@john"
    assert f'{{ service: "{pull}", accounts: ["PARTITA-worker-inventory-app"], response_type: stream }}' in engine
    assert f'{{ service: {{ account: PARTITA, subject: "{pull}" }} }}' in rest
    assert f'{{ stream: {{ account: PARTITA, subject: "_INBOX_{worker.public_key}.>" }} }}' in rest


def test_credentials_name_their_identity_and_its_inbox_prefix(tmp_path: Path) -> None:
    import base64
    import json

    from partita.transport import Credentials

    seed, public_key = new_nkey()
    seed_file = tmp_path / "w.nk"
    seed_file.write_text(seed + "\n")
    assert Credentials(nkey=str(seed_file)).resolved_inbox_prefix() == f"_INBOX_{public_key}"
    assert Credentials(user="ops.team", password="x").resolved_inbox_prefix() == "_INBOX_ops=2Eteam"
    assert Credentials().resolved_inbox_prefix() is None
    claims = base64.urlsafe_b64encode(json.dumps({"sub": public_key}).encode()).decode().rstrip("=")
    creds = tmp_path / "u.creds"
    creds.write_text(
        f"-----BEGIN NATS USER JWT-----\neyJ0eXAiOiJKV1QifQ.{claims}.c2ln\n------END NATS USER JWT------\n\n"
        f"-----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
    )
    assert Credentials(creds=str(creds)).principal() == public_key
    for bad in ({"nkey": "a", "user": "u", "password": "p"}, {"user": "u"}, {"tls_cert": "c.pem"}):
        with pytest.raises(AuthError):
            Credentials(**bad)  # type: ignore[arg-type]
    (tmp_path / "garbage.nk").write_text("not a seed")
    with pytest.raises(AuthError, match="not an nkey seed"):
        Credentials(nkey=str(tmp_path / "garbage.nk")).principal()


def test_a_bad_identity_writes_nothing(tmp_path: Path) -> None:
    auth, outside = tmp_path / "auth", tmp_path / "x"
    outside.mkdir()
    (outside / "node.nk").write_text("precious")
    assert main(["auth", "--dir", str(auth), "add-client", "../x/node"]) == 2
    assert (outside / "node.nk").read_text() == "precious"
    assert main(["auth", "--dir", str(auth), "add-worker", "w", "--task", "t", "--domain", ""]) == 2
    assert main(["auth", "--dir", str(auth), "add-worker", "w", "--task", ""]) == 2
    assert not auth.exists() or not any(auth.iterdir())
