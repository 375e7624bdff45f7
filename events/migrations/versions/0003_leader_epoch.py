"""The leader epoch: one row, incremented by every daemon that takes the leader lease.

A daemon's appends carry the epoch it took the lease at, and the append transaction compares it
with this row (see ``events.epoch``): a deposed leader, one paused while another took over and
then resumed, has its append refused by the database itself. One row per schema, since the
lease is one per schema (PostgreSQL) or per database file (SQLite).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leader_epoch",
        sa.Column("id", sa.SmallInteger, primary_key=True, autoincrement=False),
        sa.Column("epoch", sa.BigInteger, nullable=False),
        sa.CheckConstraint("id = 1", name="leader_epoch_one_row"),
    )
    op.execute("INSERT INTO leader_epoch (id, epoch) VALUES (1, 0)")


def downgrade() -> None:
    op.drop_table("leader_epoch")
