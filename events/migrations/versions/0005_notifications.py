"""Notifications: each notifier's place in the log, and its outbox.

``notifier_checkpoints`` holds, per Notifier resource (by name), the log position up to which
its events were taken into the outbox; it moves in the same transaction as the rows it adds,
with a compare-and-set, so an event is taken once. ``notifications`` is the outbox: one row per
notice and notifier, unique by (notifier, notice_id), so a condition seen again (a credential
still expiring, the daemon restarted) is told once; a row is pending until a delivery is
answered with 2xx (``delivered_at``), and a failed attempt sets ``attempts``,
``next_attempt_at`` and ``last_error``. The body is stored as sent, so a delivery repeated
after a crash is the same bytes and the same id.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notifier_checkpoints",
        sa.Column("notifier", sa.String(63), primary_key=True),
        sa.Column("position", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "notifications",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("notifier", sa.String(63), nullable=False),
        sa.Column("notice_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_at", sa.String(27), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.String(27)),
        sa.Column("delivered_at", sa.String(27)),
        sa.Column("last_error", sa.Text),
        sa.UniqueConstraint("notifier", "notice_id", name="notifications_once"),
    )
    op.create_index("notifications_pending", "notifications", ["notifier", "seq"],
                    sqlite_where=sa.text("delivered_at IS NULL"),
                    postgresql_where=sa.text("delivered_at IS NULL"))


def downgrade() -> None:
    op.drop_table("notifications")
    op.drop_table("notifier_checkpoints")
