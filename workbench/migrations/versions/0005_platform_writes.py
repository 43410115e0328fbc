"""platform_writes: results of platform writes by idempotency key

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 01:00:00
"""
import sqlalchemy as sa
from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'platform_writes',
        sa.Column('org_id', sa.String(length=64), nullable=False),
        sa.Column('idempotency_key', sa.String(length=200), nullable=False),
        sa.Column('platform', sa.String(length=64), nullable=False),
        sa.Column('level', sa.String(length=32), nullable=False),
        sa.Column('entity_id', sa.String(length=200), nullable=False),
        sa.Column('change', sa.JSON(), nullable=False),
        sa.Column('before', sa.JSON(), nullable=False),
        sa.Column('after', sa.JSON(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('org_id', 'idempotency_key'),
    )


def downgrade() -> None:
    op.drop_table('platform_writes')
