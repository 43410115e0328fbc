"""notifications: an index for the dispatcher's "what is due" query

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 21:20:00
"""
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_notifications_due', 'notifications', ['status', 'next_attempt_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_notifications_due', table_name='notifications')
