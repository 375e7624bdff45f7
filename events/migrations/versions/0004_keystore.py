"""The database keystore: encrypted items and the master keys that encrypted them.

``keystore_keys`` names each master key by its key check value (an HMAC of a fixed label under
the key: it reveals nothing of the key) with its status: ``current``, ``next`` (a rotation in
progress) or ``retired``; at most one key is current and one next (a partial unique index).
``keystore_items`` holds one AES-256-GCM ciphertext per item, its nonce and the key id that
encrypted it. The master key itself is never in the database.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "keystore_keys",
        sa.Column("key_id", sa.String(80), primary_key=True),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("created_at", sa.String(27), nullable=False),
        sa.Column("retired_at", sa.String(27)),
        sa.CheckConstraint("status IN ('current', 'next', 'retired')",
                           name="keystore_keys_status"),
    )
    op.create_index("keystore_keys_one_per_status", "keystore_keys", ["status"], unique=True,
                    sqlite_where=sa.text("status <> 'retired'"),
                    postgresql_where=sa.text("status <> 'retired'"))
    op.create_table(
        "keystore_items",
        sa.Column("item_id", sa.String(200), primary_key=True),
        sa.Column("ciphertext", sa.LargeBinary, nullable=False),
        sa.Column("nonce", sa.LargeBinary, nullable=False),
        sa.Column("key_id", sa.String(80), sa.ForeignKey("keystore_keys.key_id"),
                  nullable=False),
        sa.Column("created_at", sa.String(27), nullable=False),
        sa.Column("updated_at", sa.String(27), nullable=False),
    )
    op.create_index("keystore_items_key_id", "keystore_items", ["key_id"])


def downgrade() -> None:
    op.drop_table("keystore_items")
    op.drop_table("keystore_keys")
