"""What the leading daemon last said about itself: one row, for ``orchestrator status``.

The leader writes it after every tick it completes: its epoch, who it is (host and process),
since when it leads, when its last tick ran and that tick's summary (JSON: what it did, the
applications held by its drift check, its last error). The write is fenced like an append: it
changes the row only while the writer's epoch is the one in ``leader_epoch``, so a deposed
leader cannot overwrite its successor's. Nothing in it is a fact of the log: the log stays the
only durable state, and this row is what a reader of the database cannot derive from it (the
daemon's own clock and memory). One row per schema, like the lease and the epoch.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "daemon_status",
        sa.Column("id", sa.SmallInteger, primary_key=True, autoincrement=False),
        sa.Column("epoch", sa.BigInteger),
        sa.Column("holder", sa.String(300)),
        sa.Column("leader_since", sa.String(40)),
        sa.Column("last_tick_at", sa.String(40)),
        sa.Column("summary", sa.Text),
        sa.CheckConstraint("id = 1", name="daemon_status_one_row"),
    )
    op.execute("INSERT INTO daemon_status (id) VALUES (1)")


def downgrade() -> None:
    op.drop_table("daemon_status")
