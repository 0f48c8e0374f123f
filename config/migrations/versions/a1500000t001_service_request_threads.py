"""service request threads (issue 15): subscriber and operator messages and
status changes of a request, in order; existing answers moved into them

Revision ID: a1500000t001
Revises: a1500000c001
Create Date: 2026-12-06 03:20:00
"""
from alembic import op
import sqlalchemy as sa


revision = 'a1500000t001'
down_revision = 'a1500000c001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'service_request_messages',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('request_id', sa.Integer(), nullable=False),
        sa.Column('author_kind', sa.String(length=16), nullable=False),
        sa.Column('author', sa.String(length=100), nullable=False),
        sa.Column('body', sa.Text(), nullable=True),
        sa.Column('status', sa.String(length=16), nullable=True),
        sa.Column('idempotency_key', sa.String(length=100), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.CheckConstraint("author_kind IN ('subscriber', 'operator')",
                           name=op.f('ck_service_request_messages_author_kind')),
        sa.CheckConstraint("status IS NULL OR status IN ('new', 'in_progress', 'done', "
                           "'rejected')", name=op.f('ck_service_request_messages_status')),
        sa.CheckConstraint('body IS NOT NULL OR status IS NOT NULL',
                           name=op.f('ck_service_request_messages_says_something')),
        sa.ForeignKeyConstraint(['request_id'], ['service_requests.id'],
                                name=op.f('fk_service_request_messages_request_id_service_requests')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_service_request_messages')),
        sa.UniqueConstraint('idempotency_key',
                            name=op.f('uq_service_request_messages_idempotency_key')),
    )
    op.create_index('ix_service_request_messages_request', 'service_request_messages',
                    ['request_id', 'id'], unique=False)
    # What a request had before threads: the operator's one answer and its
    # current status, set at updated_at. Who set them is not recorded on
    # the request, so the entry's author is "operator".
    op.execute(
        "INSERT INTO service_request_messages (request_id, author_kind, author, body, status, "
        "created_at) "
        "SELECT id, 'operator', 'operator', answer, "
        "CASE WHEN status <> 'new' THEN status END, updated_at FROM service_requests "
        "WHERE answer IS NOT NULL OR status <> 'new' ORDER BY id")


def downgrade() -> None:
    op.drop_index('ix_service_request_messages_request',
                  table_name='service_request_messages')
    op.drop_table('service_request_messages')
