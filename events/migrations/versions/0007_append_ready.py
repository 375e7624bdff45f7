"""PostgreSQL: events_append_ready(...), so that an append is one statement in autocommit.

The store's usual append (it guesses the head from its own last append) becomes a single
``INSERT ... SELECT`` whose rows go in only when ``events_append_ready`` says the guess holds.
The function takes the append lock first (the transaction advisory lock every append takes),
then reads the head, the stream's version and, for a fenced writer, the leader epoch and whether
the writer's lock session still holds its lock. A PL/pgSQL function's statements each read the
database afresh (READ COMMITTED), so these reads happen under the lock, after every append that
committed before it. False: the store writes nothing and takes its exact path. The position's
primary key stays the last word on the chain's order either way.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """CREATE FUNCTION events_append_ready(
             lock_key bigint, guess_head bigint, guess_stream text, guess_version integer,
             writer_epoch bigint, writer_session integer) RETURNS boolean
           LANGUAGE plpgsql VOLATILE AS $$
        BEGIN
          PERFORM pg_advisory_xact_lock(lock_key);
          IF coalesce((SELECT max(position) FROM events), 0) <> guess_head THEN
            RETURN false;
          END IF;
          IF coalesce((SELECT max(stream_version) FROM events WHERE stream_id = guess_stream), 0)
             <> guess_version THEN
            RETURN false;
          END IF;
          IF writer_epoch IS NOT NULL THEN
            IF (SELECT epoch FROM leader_epoch WHERE id = 1) IS DISTINCT FROM writer_epoch THEN
              RETURN false;
            END IF;
            IF NOT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted
                           AND pid = writer_session) THEN
              RETURN false;
            END IF;
          END IF;
          RETURN true;
        END $$"""
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION events_append_ready(bigint, bigint, text, integer, bigint, "
                   "integer)")
