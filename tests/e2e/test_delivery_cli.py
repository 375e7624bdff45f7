"""What a rotation delivers, as an application finds it after ``orchestrator rotate``: one version
of the set behind ``..data``, every folder 0700 and file 0600, the private key the one of the
delivered certificate and of the registered credential; and a symlink planted in the delivery
tree is refused with one line, nothing written through it.

On SQLite only: what is judged here does not depend on the database (both dialects are held to
the same log by tests/integration/test_store.py and the end-to-end tests about the store).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.helpers import (
    Cli,
    assert_key_belongs,
    fill_filesystem,
    read_delivered,
    tiny_filesystem,
)

POLICIES = {  # `rotate` takes its settings from the policy that selects the app
    "svc-keys": "credential: {usage: private_key_jwt}",
    "svc-mtls": 'credential: {usage: mtls, certificate: {subject: "CN={app}"}}',
}


@pytest.fixture
def cli(sqlite_url: str, tmp_path: Path) -> Cli:
    cli = Cli(sqlite_url, tmp_path / "keystore", cwd=tmp_path)
    policies = tmp_path / "policies"
    policies.mkdir()
    for name, credential in POLICIES.items():
        (policies / f"{name}.yaml").write_text(
            "apiVersion: orchestrator/v1\nkind: RotationPolicy\n"
            f"metadata: {{name: {name}}}\nspec:\n  selector: {{apps: [svc]}}\n  {credential}\n"
            "  rotation: {every: 30d, beforeExpiry: 7d, overlap: 1h}\n  lifetime: 60d\n")
    cli.env.update(ORCHESTRATOR_DELIVERY=str(tmp_path / "delivery"),
                   ORCHESTRATOR_POLICIES=str(policies))
    cli("app", "register", "svc")
    return cli


def _registered(cli: Cli, credential_id: str) -> str:
    """The public key or certificate the log registered for ``credential_id``."""
    (added,) = [e for e in cli("audit", "--type", "credential.added", "--format", "json")
                .json_lines() if e["payload"]["credential_id"] == credential_id]
    payload = added["payload"]
    return str(payload.get("certificate_pem") or payload["public_pem"])


def _modes(root: Path) -> dict[str, int]:
    """Permission bits of every folder and file below ``root`` (links are not followed)."""
    found = {".": stat.S_IMODE(root.lstat().st_mode)}
    for path in root.rglob("*"):
        mode = path.lstat().st_mode
        if not stat.S_ISLNK(mode):
            found[str(path.relative_to(root))] = stat.S_IMODE(mode)
    return found


@pytest.mark.parametrize("usage", ["private_key_jwt", "mtls"])
def test_a_rotation_delivers_one_private_set_whose_key_belongs_to_its_credential(
        cli: Cli, tmp_path: Path, usage: str) -> None:
    """After two rotations the folder holds one version: visible names link into ..data, the
    key is the delivered certificate's (mtls) and the registered credential's, the kid is its
    RFC 7638 thumbprint; every folder is 0700 and every file 0600."""
    cli("rotate", "svc", "--usage", usage)  # the first credential: completed
    cli("rotate", "svc", "--usage", usage)  # delivered, the old one kept for the overlap
    folder = tmp_path / "delivery" / "svc" / usage
    files = read_delivered(folder)
    version = os.readlink(folder / "..data")
    assert sorted(p.name for p in folder.iterdir()) == sorted([*files, "..data", version])
    assert all(os.readlink(folder / name) == f"..data/{name}" for name in files)
    assert (folder / "kid").read_bytes() == files["kid"]
    assert ("certificate.pem" in files) == (usage == "mtls")
    credential_id = files["credential_id"].decode()
    assert_key_belongs(files, _registered(cli, credential_id), kid_is_thumbprint=True)
    modes = _modes(tmp_path / "delivery")
    assert {path: mode for path, mode in modes.items() if mode != 0o600} == {
        ".": 0o700, "svc": 0o700, f"svc/{usage}": 0o700, f"svc/{usage}/{version}": 0o700}


def _plant_app_link(delivery: Path, outside: Path) -> None:
    delivery.mkdir()
    (delivery / "svc").symlink_to(outside, target_is_directory=True)


def _plant_kid_link(delivery: Path, outside: Path) -> None:
    (delivery / "svc" / "private_key_jwt").mkdir(parents=True)
    (delivery / "svc" / "private_key_jwt" / "kid").symlink_to(outside / "victim")


def _plant_data_link(delivery: Path, outside: Path) -> None:
    (delivery / "svc" / "private_key_jwt").mkdir(parents=True)
    (delivery / "svc" / "private_key_jwt" / "..data").symlink_to(outside)


@pytest.mark.parametrize("plant", [_plant_app_link, _plant_kid_link, _plant_data_link])
def test_a_symlink_planted_in_the_delivery_tree_is_refused(cli: Cli, tmp_path: Path,
                                                           plant: object) -> None:
    """A symlink where the layout has a folder, a visible name or ..data of its own: the
    rotation's delivery fails with one line naming the link, and nothing is written through
    it (the folder it points to keeps exactly what it had)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_bytes(b"unchanged")
    assert callable(plant)
    plant(tmp_path / "delivery", outside)
    result = cli.run("rotate", "svc", "--usage", "private_key_jwt")
    # `rotate` also logs the failed step (a warning on stderr): check the one error line
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode != 0 and len(errors) == 1, str(result)
    assert "Traceback" not in result.stderr, str(result)
    for fragment in ("failed at deliver", "is a symbolic link", "remove it"):
        assert fragment in errors[0], str(result)
    assert sorted(p.name for p in outside.iterdir()) == ["victim"]
    assert (outside / "victim").read_bytes() == b"unchanged"


def test_a_delivery_folder_that_is_full_is_one_line_and_leaves_no_half_version(
        cli: Cli, tmp_path: Path) -> None:
    """The delivery folder on a real, tiny tmpfs filled up (ENOSPC): the rotation fails at
    deliver with one line (what, where, what to do) and no half-written version is left."""
    with tiny_filesystem(tmp_path / "mnt") as mount:
        cli.env["ORCHESTRATOR_DELIVERY"] = str(mount)
        (mount / "svc").mkdir(mode=0o700)
        fill_filesystem(mount)
        result = cli.run("rotate", "svc", "--usage", "private_key_jwt")
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert result.returncode != 0 and len(errors) == 1, str(result)
        assert "Traceback" not in result.stderr, str(result)
        assert f"delivery {mount}/svc/private_key_jwt: cannot write the files (No space left on " \
               "device); free space or fix the permissions there" in errors[0], str(result)
        leftovers = [p.name for p in (mount / "svc").rglob("*")]
        assert leftovers in ([], ["private_key_jwt"]), leftovers
