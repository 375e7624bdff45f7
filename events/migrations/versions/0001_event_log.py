"""The event log, once-only claims, read models and projection checkpoints.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_SQLITE_GUARDS = [
    "CREATE TRIGGER events_no_update BEFORE UPDATE ON events "
    "BEGIN SELECT RAISE(ABORT, 'events are append-only: UPDATE refused'); END",
    "CREATE TRIGGER events_no_delete BEFORE DELETE ON events "
    "BEGIN SELECT RAISE(ABORT, 'events are append-only: DELETE refused'); END",
    "CREATE TRIGGER event_claims_no_update BEFORE UPDATE ON event_claims "
    "BEGIN SELECT RAISE(ABORT, 'claims are append-only: UPDATE refused'); END",
    "CREATE TRIGGER event_claims_no_delete BEFORE DELETE ON event_claims "
    "BEGIN SELECT RAISE(ABORT, 'claims are append-only: DELETE refused'); END",
]

_PG_GUARDS = [
    """CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      RAISE EXCEPTION '% are append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
    END $$""",
    "CREATE TRIGGER events_no_update_delete BEFORE UPDATE OR DELETE ON events "
    "FOR EACH ROW EXECUTE FUNCTION events_append_only()",
    "CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events "
    "FOR EACH STATEMENT EXECUTE FUNCTION events_append_only()",
    "CREATE TRIGGER event_claims_no_update_delete BEFORE UPDATE OR DELETE ON event_claims "
    "FOR EACH ROW EXECUTE FUNCTION events_append_only()",
    "CREATE TRIGGER event_claims_no_truncate BEFORE TRUNCATE ON event_claims "
    "FOR EACH STATEMENT EXECUTE FUNCTION events_append_only()",
]


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("position", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("stream_id", sa.String(200), nullable=False),
        sa.Column("stream_version", sa.Integer, nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False, unique=True),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("schema_version", sa.SmallInteger, nullable=False),
        sa.Column("occurred_at", sa.String(27), nullable=False),
        sa.Column("recorded_at", sa.String(27), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("correlation_id", sa.String(64)),
        sa.Column("causation_id", sa.String(64)),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.UniqueConstraint("stream_id", "stream_version", name="events_stream_version_key"),
    )
    op.create_index("events_type_occurred_at", "events", ["type", "occurred_at"])
    op.create_index("events_occurred_at", "events", ["occurred_at"])
    op.create_table(
        "event_claims",
        sa.Column("namespace", sa.String(20), primary_key=True),
        sa.Column("value", sa.String(200), primary_key=True),
        sa.Column("stream_id", sa.String(200), nullable=False),
        sa.Column("position", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "projection_checkpoints",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("position", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "rm_applications",
        sa.Column("app", sa.String(200), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("state", sa.Text, nullable=False),  # the folded AppState, canonical JSON
        sa.Column("registered_at", sa.String(27)),
        sa.Column("labels", sa.Text, nullable=False),
        sa.Column("secret_version", sa.Integer),
        sa.Column("live_credentials", sa.Integer, nullable=False),
        sa.Column("running_rotations", sa.Integer, nullable=False),
    )
    op.create_table(
        "rm_credentials",
        sa.Column("credential_id", sa.String(64), primary_key=True),
        sa.Column("app", sa.String(200), nullable=False, index=True),
        sa.Column("usage", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("kid", sa.String(64), nullable=False),
        sa.Column("alg", sa.String(16)),
        sa.Column("key_size", sa.Integer),
        sa.Column("fingerprint", sa.String(100), nullable=False),
        sa.Column("name", sa.String(200)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("added_at", sa.String(27), nullable=False),
        sa.Column("activated_at", sa.String(27)),
        sa.Column("expires_at", sa.String(27), index=True),
        sa.Column("updated_at", sa.String(27), nullable=False),
    )
    op.create_table(
        "rm_rotations",
        sa.Column("rotation_id", sa.String(64), primary_key=True),
        sa.Column("app", sa.String(200), nullable=False, index=True),
        sa.Column("usage", sa.String(32), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("policy", sa.String(100)),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("next_attempt_at", sa.String(27)),
        sa.Column("started_at", sa.String(27), nullable=False),
        sa.Column("updated_at", sa.String(27), nullable=False),
    )
    guards = _PG_GUARDS if op.get_bind().dialect.name == "postgresql" else _SQLITE_GUARDS
    for statement in guards:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("the event log is never dropped by a migration")
