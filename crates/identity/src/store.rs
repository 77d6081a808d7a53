//! Persistence of users, refresh tokens and signing keys, written once for
//! SQLite, PostgreSQL and MariaDB.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, LikeExpr};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect,
};

/// `Debug` of a row that holds a secret (or the hash of one): the secret's
/// field prints as `[redacted]`, so that logging a row leaks nothing.
macro_rules! redacted_debug {
    ($model:ty, $name:literal, secret: $secret:ident, fields: [$($field:ident),*]) => {
        impl std::fmt::Debug for $model {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct($name)
                    $(.field(stringify!($field), &self.$field))*
                    .field(stringify!($secret), &"[redacted]")
                    .finish()
            }
        }
    };
}

pub mod user {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        #[sea_orm(unique)]
        pub email: String,
        pub password_hash: String,
        pub name: String,
        pub phone: Option<String>,
        pub role: String,
        pub active: bool,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    redacted_debug!(Model, "UserRow", secret: password_hash,
        fields: [id, email, name, phone, role, active, created_at, updated_at]);
}

pub mod refresh_token {
    use sea_orm::entity::prelude::*;

    /// One refresh token; the tokens of one sign-in share a family, and at
    /// most one of them is live (neither used nor revoked).
    #[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "refresh_tokens")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub family_id: String,
        pub user_id: String,
        /// SHA-256 of the token, hex: the token itself is never stored.
        #[sea_orm(unique)]
        pub token_hash: String,
        pub created_at: DateTimeUtc,
        pub expires_at: DateTimeUtc,
        pub used_at: Option<DateTimeUtc>,
        pub revoked_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    redacted_debug!(Model, "RefreshRow", secret: token_hash,
        fields: [id, family_id, user_id, created_at, expires_at, used_at, revoked_at]);
}

pub mod signing_key {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "signing_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub kid: String,
        /// The Ed25519 key as PKCS#8, sealed with the key-encryption key
        /// (`keys::Sealer`); plain base64 in rows written before sealing,
        /// which are sealed when next read.
        #[sea_orm(column_type = "Text")]
        pub private_key: String,
        /// The newest key signs; an older one stops signing when a newer
        /// one is made, and is published until its last token expires.
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    redacted_debug!(Model, "KeyRow", secret: private_key, fields: [kid, created_at]);
}

pub type UserRow = user::Model;
pub type RefreshRow = refresh_token::Model;
pub type KeyRow = signing_key::Model;

pub async fn insert_user<C: ConnectionTrait>(conn: &C, row: UserRow) -> Result<(), DbErr> {
    user::Entity::insert(user::ActiveModel {
        id: Set(row.id),
        email: Set(row.email),
        password_hash: Set(row.password_hash),
        name: Set(row.name),
        phone: Set(row.phone),
        role: Set(row.role),
        active: Set(row.active),
        created_at: Set(row.created_at),
        updated_at: Set(row.updated_at),
    })
    .exec_without_returning(conn)
    .await
    .map(|_| ())
}

pub async fn find_user<C: ConnectionTrait>(conn: &C, id: &str) -> Result<Option<UserRow>, DbErr> {
    user::Entity::find_by_id(id.to_owned()).one(conn).await
}

pub async fn find_user_by_email<C: ConnectionTrait>(
    conn: &C,
    email: &str,
) -> Result<Option<UserRow>, DbErr> {
    user::Entity::find()
        .filter(user::Column::Email.eq(email))
        .one(conn)
        .await
}

pub async fn any_admin<C: ConnectionTrait>(conn: &C) -> Result<bool, DbErr> {
    Ok(user::Entity::find()
        .filter(user::Column::Role.eq("admin"))
        .count(conn)
        .await?
        > 0)
}

/// The ids of the active admins, their rows locked until the transaction
/// ends (SQLite's write transaction holds the whole database already), so
/// that two admins demoting each other cannot both see the other remain.
pub async fn lock_active_admins<C: ConnectionTrait>(conn: &C) -> Result<Vec<String>, DbErr> {
    let query = user::Entity::find()
        .filter(user::Column::Role.eq("admin"))
        .filter(user::Column::Active.eq(true))
        .order_by_asc(user::Column::Id);
    let rows = match conn.get_database_backend() {
        DbBackend::Sqlite => query.all(conn).await?,
        _ => query.lock_exclusive().all(conn).await?,
    };
    Ok(rows.into_iter().map(|row| row.id).collect())
}

/// Sets the profile fields; `None` when no such user.
pub async fn update_user<C: ConnectionTrait>(
    conn: &C,
    id: &str,
    name: &str,
    phone: Option<&str>,
    role: Option<&str>,
    active: Option<bool>,
) -> Result<Option<UserRow>, DbErr> {
    let mut update = user::Entity::update_many()
        .col_expr(user::Column::Name, Expr::value(name))
        .col_expr(user::Column::Phone, Expr::value(phone.map(str::to_owned)))
        .col_expr(user::Column::UpdatedAt, Expr::value(Utc::now()));
    if let Some(role) = role {
        update = update.col_expr(user::Column::Role, Expr::value(role));
    }
    if let Some(active) = active {
        update = update.col_expr(user::Column::Active, Expr::value(active));
    }
    let result = update.filter(user::Column::Id.eq(id)).exec(conn).await?;
    if result.rows_affected == 0 {
        return Ok(None);
    }
    find_user(conn, id).await
}

/// One page of users, newest first, optionally those whose email contains
/// `email` (already lower-cased).
pub async fn list_users<C: ConnectionTrait>(
    conn: &C,
    email: Option<&str>,
    page: u64,
    per_page: u64,
) -> Result<(Vec<UserRow>, u64), DbErr> {
    let mut select = user::Entity::find();
    if let Some(fragment) = email {
        let escaped = fragment
            .replace('!', "!!")
            .replace('%', "!%")
            .replace('_', "!_");
        select = select.filter(
            Expr::col(user::Column::Email).like(LikeExpr::new(format!("%{escaped}%")).escape('!')),
        );
    }
    let select = select
        .order_by_desc(user::Column::CreatedAt)
        .order_by_desc(user::Column::Id);
    emporium_platform::db::paged(conn, select, page, per_page).await
}

pub async fn insert_refresh<C: ConnectionTrait>(conn: &C, row: RefreshRow) -> Result<(), DbErr> {
    refresh_token::Entity::insert(refresh_token::ActiveModel {
        id: Set(row.id),
        family_id: Set(row.family_id),
        user_id: Set(row.user_id),
        token_hash: Set(row.token_hash),
        created_at: Set(row.created_at),
        expires_at: Set(row.expires_at),
        used_at: Set(row.used_at),
        revoked_at: Set(row.revoked_at),
    })
    .exec_without_returning(conn)
    .await
    .map(|_| ())
}

/// The token with this hash, row-locked where the backend can.
pub async fn lock_refresh<C: ConnectionTrait>(
    conn: &C,
    token_hash: &str,
) -> Result<Option<RefreshRow>, DbErr> {
    let query =
        refresh_token::Entity::find().filter(refresh_token::Column::TokenHash.eq(token_hash));
    match conn.get_database_backend() {
        DbBackend::Sqlite => query.one(conn).await,
        _ => query.lock_exclusive().one(conn).await,
    }
}

/// Marks a live token used; false when another request spent it first.
pub async fn spend_refresh<C: ConnectionTrait>(
    conn: &C,
    id: &str,
    at: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let result = refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::UsedAt, Expr::value(at))
        .filter(refresh_token::Column::Id.eq(id))
        .filter(refresh_token::Column::UsedAt.is_null())
        .filter(refresh_token::Column::RevokedAt.is_null())
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Revokes every token of a family; returns how many were still unrevoked.
pub async fn revoke_family<C: ConnectionTrait>(
    conn: &C,
    family_id: &str,
    at: DateTime<Utc>,
) -> Result<u64, DbErr> {
    Ok(refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::RevokedAt, Expr::value(at))
        .filter(refresh_token::Column::FamilyId.eq(family_id))
        .filter(refresh_token::Column::RevokedAt.is_null())
        .exec(conn)
        .await?
        .rows_affected)
}

/// Revokes every session of a user (deactivation).
pub async fn revoke_user<C: ConnectionTrait>(
    conn: &C,
    user_id: &str,
    at: DateTime<Utc>,
) -> Result<u64, DbErr> {
    Ok(refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::RevokedAt, Expr::value(at))
        .filter(refresh_token::Column::UserId.eq(user_id))
        .filter(refresh_token::Column::RevokedAt.is_null())
        .exec(conn)
        .await?
        .rows_affected)
}

/// Sessions that can still be refreshed: one live token each.
pub async fn count_sessions<C: ConnectionTrait>(
    conn: &C,
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    refresh_token::Entity::find()
        .filter(refresh_token::Column::UsedAt.is_null())
        .filter(refresh_token::Column::RevokedAt.is_null())
        .filter(refresh_token::Column::ExpiresAt.gt(now))
        .count(conn)
        .await
}

/// Every signing key, newest first (ties broken by kid, so that every
/// replica picks the same one).
pub async fn keys<C: ConnectionTrait>(conn: &C) -> Result<Vec<KeyRow>, DbErr> {
    signing_key::Entity::find()
        .order_by_desc(signing_key::Column::CreatedAt)
        .order_by_desc(signing_key::Column::Kid)
        .all(conn)
        .await
}

pub async fn insert_key<C: ConnectionTrait>(conn: &C, row: KeyRow) -> Result<(), DbErr> {
    signing_key::Entity::insert(signing_key::ActiveModel {
        kid: Set(row.kid),
        private_key: Set(row.private_key),
        created_at: Set(row.created_at),
    })
    .exec_without_returning(conn)
    .await
    .map(|_| ())
}

/// Replaces a key's stored form (sealed anew under the current key).
pub async fn reseal_key<C: ConnectionTrait>(
    conn: &C,
    kid: &str,
    private_key: String,
) -> Result<(), DbErr> {
    signing_key::Entity::update_many()
        .col_expr(signing_key::Column::PrivateKey, Expr::value(private_key))
        .filter(signing_key::Column::Kid.eq(kid))
        .exec(conn)
        .await
        .map(|_| ())
}

/// Deletes refresh tokens that expired before `before`. Spent tokens stay
/// until then: presenting one again must still end its session.
pub async fn prune_refresh<C: ConnectionTrait>(
    conn: &C,
    before: DateTime<Utc>,
) -> Result<u64, DbErr> {
    Ok(refresh_token::Entity::delete_many()
        .filter(refresh_token::Column::ExpiresAt.lt(before))
        .exec(conn)
        .await?
        .rows_affected)
}
