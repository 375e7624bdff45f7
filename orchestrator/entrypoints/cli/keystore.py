"""``orchestrator keystore``: where the private material lives, and its master key.

``status`` names the keystore and its master keys and decrypts every item; ``rotate-master``
moves every item to a new master key (resumable after any interruption) and retires the old
one; ``import-files`` copies the file keystore's items into the database keystore.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import click

from orchestrator import bootstrap as boot
from orchestrator.domain.errors import InputError, KeystoreError
from orchestrator.entrypoints.cli.context import system_of

ENV_NEW_KEY = "ORCHESTRATOR_NEW_MASTER_KEY"


@click.group()
def keystore() -> None:
    """The keystore: status, master-key rotation, moving file items into the database."""


def _database_only(system: boot.System, command: str) -> None:
    if system.keystore_backend != "database":
        raise InputError(
            f"keystore {command} works on the database keystore, and this one is the file "
            f"keystore {system.settings.keystore}: move its items with orchestrator keystore "
            "import-files under ORCHESTRATOR_KEYSTORE_BACKEND=database first")


@keystore.command("status")
@click.pass_context
def keystore_status(ctx: click.Context) -> None:
    """Where the items are, which master keys there are, and whether every item decrypts."""
    system = system_of(ctx)
    if system.keystore_backend == "database":
        db = system.database_keystore()
        click.echo(f"keystore: database {boot.redacted_url(system.settings.db)}")
        for key in db.status():
            click.echo(f"master key {key.key_id}: {key.state}, {key.items} item(s)")
        count = db.check_all()
    else:
        files = system.file_keystore()
        click.echo(f"keystore: files in {system.settings.keystore}")
        count = sum(files.get(item_id) is not None for item_id in files.ids())
    click.echo(f"ok: {count} item(s), each decrypts with this process's master key")


@keystore.command("rotate-master")
@click.option("--new-key-file", type=click.Path(dir_okay=False, path_type=Path),
              help="The new master key: 32 raw bytes or their base64url text "
                   f"[or env {ENV_NEW_KEY}, base64url].")
@click.pass_context
def rotate_master_command(ctx: click.Context, new_key_file: Path | None) -> None:
    """Re-encrypt every item under a new master key and retire the old one.

    The current key is the configured one (ORCHESTRATOR_MASTER_KEY or master.key). Interrupted
    at any point, run it again with the same new key: it resumes. At the end master.key is
    replaced by the new key, or you are told to change ORCHESTRATOR_MASTER_KEY."""
    import os

    from orchestrator.adapters.keystore import decode_master_key, read_new_key
    from orchestrator.app.master_rotation import rotate_master
    from orchestrator.app.ports import MasterKeyRotation

    if new_key_file is not None:
        new_key = read_new_key(new_key_file)
    elif os.environ.get(ENV_NEW_KEY):
        new_key = decode_master_key(os.environ[ENV_NEW_KEY], where=ENV_NEW_KEY)
    else:
        raise InputError(f"keystore rotate-master needs the new key: give --new-key-file FILE "
                         f"or set {ENV_NEW_KEY}")
    system = system_of(ctx)
    _database_only(system, "rotate-master")
    # the database keystore (or a test's decorator of it: wrap_keystore)
    done = rotate_master(cast(MasterKeyRotation, system.keystore), new_key)
    click.echo(f"master key rotation {done.start.value}: {done.moved} item(s) re-encrypted "
               "this run, every item is under the new key, the old key is retired")
    click.echo(done.installed)


@keystore.command("import-files")
@click.pass_context
def import_files(ctx: click.Context) -> None:
    """Copy every item of the file keystore (--keystore DIR) into the database keystore.

    An item the database holds already with the same bytes is skipped; one it holds with
    other bytes is refused (exit 1, named). The files are left in place."""
    system = system_of(ctx)
    _database_only(system, "import-files")
    files, db = system.file_keystore(), system.database_keystore(guard_files=False)
    imported = same = 0
    differ = []
    for item_id in files.ids():
        data = files.get(item_id)
        if data is None:
            continue  # deleted meanwhile
        existed = db.get(item_id)
        stored = db.put_new(item_id, data)
        if stored != data:
            differ.append(item_id)
        elif existed is None:
            imported += 1
        else:
            same += 1
    click.echo(f"imported {imported} item(s) from {system.settings.keystore} ({same} there "
               "already); the files are left in place: remove them once the database is "
               "backed up")
    if differ:
        raise KeystoreError(f"{len(differ)} item(s) differ between the files and the database, "
                            f"left as the database has them: {', '.join(differ[:5])}")
