"""PostgreSQL: events_guard(ok), which aborts the transaction when ``ok`` is false.

It lets a PostgreSQL append run in one round trip: the store sends, in one pipeline, the lock,
a guard that the log head and the stream version are what it expects, the inserts and COMMIT;
a false guess aborts the whole transaction and the store takes the exact (two round-trip)
path. SQLite needs nothing here.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """CREATE FUNCTION events_guard(ok boolean) RETURNS void LANGUAGE plpgsql AS $$
        BEGIN
          IF ok IS NOT TRUE THEN
            RAISE EXCEPTION 'events: the append guessed a stale head or stream version'
              USING ERRCODE = 'serialization_failure';
          END IF;
        END $$"""
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION events_guard(boolean)")
