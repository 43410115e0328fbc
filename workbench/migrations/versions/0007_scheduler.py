"""scheduler: job_runs trigger/slot/notebook; job_locks, event_cursors, backfills

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 02:15:00
"""
import sqlalchemy as sa
from alembic import op


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('job_runs') as batch:
        batch.add_column(sa.Column('trigger', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('scheduled_for', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('notebook', sa.Text(), nullable=True))
    op.create_table(
        'job_locks',
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('owner', sa.String(length=64), nullable=False),
        sa.Column('acquired_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('name'),
    )
    op.create_table(
        'event_cursors',
        sa.Column('org_id', sa.String(length=64), nullable=False),
        sa.Column('consumer', sa.String(length=64), nullable=False),
        sa.Column('last_seq', sa.Integer(), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('org_id', 'consumer'),
    )
    op.create_table(
        'backfills',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('org_id', sa.String(length=64), nullable=False),
        sa.Column('job', sa.String(length=64), nullable=False),
        sa.Column('start', sa.Date(), nullable=False),
        sa.Column('end', sa.Date(), nullable=False),
        sa.Column('window_days', sa.Integer(), nullable=False),
        sa.Column('parameters', sa.JSON(), nullable=False),
        sa.Column('next_start', sa.Date(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_backfills_org_id', 'backfills', ['org_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_backfills_org_id', table_name='backfills')
    op.drop_table('backfills')
    op.drop_table('event_cursors')
    op.drop_table('job_locks')
    with op.batch_alter_table('job_runs') as batch:
        batch.drop_column('notebook')
        batch.drop_column('scheduled_for')
        batch.drop_column('trigger')
