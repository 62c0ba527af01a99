"""The rewards store: accounts (the per-user lock row), the ledger, lots, budgets, redemptions,
adjustments and referrals, plus the runtime's tables.

Revision ID: 0001
Revises:
"""

from alembic import op

from shared.runtime.schema import runtime_ddl

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

DDL = (
    # One row per user: the lock every write path takes (shared.runtime.locks), the domain's
    # state (NULL while the row is a placeholder holding a first-seen user's lock) and the
    # balances, kept in the same transaction as the entries that move them. `version` counts
    # saves (a process's cache of decoded states is checked against it).
    """
    CREATE TABLE accounts (
        user_id    text        PRIMARY KEY,
        state      jsonb,
        available  bigint      NOT NULL DEFAULT 0 CHECK (available >= 0),
        pending    bigint      NOT NULL DEFAULT 0 CHECK (pending >= 0),
        held       bigint      NOT NULL DEFAULT 0 CHECK (held >= 0),
        debt       bigint      NOT NULL DEFAULT 0 CHECK (debt <= 0),
        tier       text,
        version    bigint      NOT NULL DEFAULT 0,
        updated_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    # The append-only double-entry ledger. `id` is deterministic (shared.ids.output_id of the
    # input id and the rule); an award is unique per (input id, award key): the rule id, or for
    # a repeatable badge the badge and how many times it was earned.
    """
    CREATE TABLE ledger_transactions (
        id          text        PRIMARY KEY,
        user_id     text        NOT NULL,
        kind        text        NOT NULL,
        at          timestamptz NOT NULL,
        rule_id     text,
        lot_id      text,
        reverses    text,
        source_id   text        NOT NULL,
        award_key   text,
        reason      text,
        actor       text,
        recorded_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    "CREATE UNIQUE INDEX ledger_award_once ON ledger_transactions (source_id, award_key) "
    "WHERE award_key IS NOT NULL",
    "CREATE INDEX ledger_transactions_user ON ledger_transactions (user_id, at, id)",
    """
    CREATE TABLE ledger_entries (
        transaction_id text   NOT NULL REFERENCES ledger_transactions (id),
        account_kind   text   NOT NULL,
        account_owner  text   NOT NULL,
        amount         bigint NOT NULL CHECK (amount <> 0),
        PRIMARY KEY (transaction_id, account_kind, account_owner)
    )
    """,
    "CREATE INDEX ledger_entries_account ON ledger_entries (account_kind, account_owner)",
    """
    CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'the ledger is append-only: % on % refused', TG_OP, TG_TABLE_NAME;
    END
    $$
    """,
    "CREATE TRIGGER ledger_transactions_append_only BEFORE UPDATE OR DELETE ON ledger_transactions "
    "FOR EACH ROW EXECUTE FUNCTION ledger_append_only()",
    "CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries "
    "FOR EACH ROW EXECUTE FUNCTION ledger_append_only()",
    # Each credit is a lot with its own expiry (a queryable projection of the users' states).
    """
    CREATE TABLE lots (
        id             text        PRIMARY KEY,
        user_id        text        NOT NULL,
        rule_id        text        NOT NULL,
        amount         bigint      NOT NULL CHECK (amount > 0),
        remaining      bigint      NOT NULL CHECK (remaining >= 0),
        earned_at      timestamptz NOT NULL,
        expires_at     timestamptz,
        pending        boolean     NOT NULL,
        reversed       bigint      NOT NULL DEFAULT 0,
        expired_amount bigint      NOT NULL DEFAULT 0,
        expired        boolean     NOT NULL DEFAULT false,
        updated_at     timestamptz NOT NULL DEFAULT now()
    )
    """,
    "CREATE INDEX lots_user ON lots (user_id, expires_at)",
    # Per-rule budgets, locked (SELECT ... FOR UPDATE) by every transaction that may draw on them.
    """
    CREATE TABLE budgets (
        rule_id      text        PRIMARY KEY,
        limit_points bigint      NOT NULL,
        spent        bigint      NOT NULL DEFAULT 0,
        updated_at   timestamptz NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE redemptions (
        user_id         text        NOT NULL,
        idempotency_key text        NOT NULL,
        request_hash    text        NOT NULL,
        hold_id         text        NOT NULL,
        points          bigint      NOT NULL,
        state           text        NOT NULL
                        CHECK (state IN ('held', 'confirmed', 'released', 'expired', 'refused')),
        status_code     integer     NOT NULL,
        response        jsonb       NOT NULL,
        expires_at      timestamptz,
        created_at      timestamptz NOT NULL DEFAULT now(),
        updated_at      timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (user_id, idempotency_key)
    )
    """,
    "CREATE INDEX redemptions_hold ON redemptions (hold_id)",
    """
    CREATE TABLE adjustments (
        user_id         text        NOT NULL,
        idempotency_key text        NOT NULL,
        request_hash    text        NOT NULL,
        status_code     integer     NOT NULL,
        response        jsonb       NOT NULL,
        created_at      timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (user_id, idempotency_key)
    )
    """,
    # Who referred whom (at most one referrer per referee), for the cycle check of later claims.
    """
    CREATE TABLE referrals (
        referee_id  text        PRIMARY KEY,
        referrer_id text        NOT NULL,
        claimed_at  timestamptz NOT NULL,
        source_id   text        NOT NULL
    )
    """,
    "CREATE INDEX referrals_referrer ON referrals (referrer_id)",
)


def upgrade() -> None:
    for statement in (*runtime_ddl(), *DDL):
        op.execute(statement)
