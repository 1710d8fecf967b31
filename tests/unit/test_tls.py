"""The local CA of `partita dev --tls`: generated once, reused while valid, regenerated when inconsistent."""

from __future__ import annotations

from pathlib import Path

from partita.transport import local_ca


def test_the_local_ca_is_reused_and_replaced_when_a_renewal_was_cut_short(tmp_path: Path) -> None:
    files = local_ca(tmp_path / "tls")
    ca = files.ca.read_bytes()
    assert local_ca(tmp_path / "tls").ca.read_bytes() == ca  # still valid: reused, clients keep working
    assert files.server_key.stat().st_mode & 0o777 == 0o600
    other = local_ca(tmp_path / "other")
    files.server_cert.write_bytes(other.server_cert.read_bytes())  # a leaf the CA did not sign
    renewed = local_ca(tmp_path / "tls")
    assert renewed.ca.read_bytes() != ca
    assert f'cert_file: "{renewed.server_cert}"' in renewed.server_block()
