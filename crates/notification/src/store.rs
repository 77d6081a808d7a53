//! The record of every message, written once for SQLite, PostgreSQL and
//! MariaDB.
//!
//! A message is `queued` until a dispatcher sends it (`sent`) or runs out
//! of attempts (`failed`). A dispatcher takes a message by compare-and-set
//! on its `version`, moving `next_attempt_at` a lease ahead, so that two
//! dispatchers (two replicas) never send one message at once, and one that
//! dies mid-send leaves it to be taken again when the lease ends.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};

use crate::domain::{Channel, Draft, Status};

pub mod notification {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "notifications")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub user_id: Option<String>,
        pub channel: String,
        pub recipient: String,
        pub kind: String,
        pub subject: String,
        pub body_text: String,
        pub body_html: Option<String>,
        pub status: String,
        pub attempts: i32,
        pub error: Option<String>,
        pub event_id: Option<String>,
        pub version: i64,
        pub next_attempt_at: DateTimeUtc,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub use notification::Model as Record;
use notification::{Column, Entity};

/// The longest subject kept; a longer one is cut.
pub const MAX_SUBJECT: usize = 300;

/// Which records a list holds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    pub user_id: Option<String>,
    pub status: Option<Status>,
    pub kind: Option<String>,
}

fn cut(text: &str, chars: usize) -> String {
    text.chars().take(chars).collect()
}

#[derive(Clone)]
pub struct Store {
    db: sea_orm::DatabaseConnection,
}

impl Store {
    pub fn new(db: sea_orm::DatabaseConnection) -> Self {
        Self { db }
    }

    pub fn db(&self) -> &sea_orm::DatabaseConnection {
        &self.db
    }

    /// Records `draft` on `conn` (the inbox's transaction for an event's
    /// messages): `queued`, or `failed` at once when it carries an error.
    pub async fn insert<C: ConnectionTrait>(conn: &C, draft: &Draft) -> Result<Record, DbErr> {
        let now = Utc::now();
        let status = match draft.error {
            Some(_) => Status::Failed,
            None => Status::Queued,
        };
        notification::ActiveModel {
            id: Set(uuid::Uuid::now_v7().to_string()),
            user_id: Set(draft.user_id.clone()),
            channel: Set(draft.channel.as_str().to_owned()),
            recipient: Set(draft.recipient.clone()),
            kind: Set(draft.kind.clone()),
            subject: Set(cut(&draft.subject, MAX_SUBJECT)),
            body_text: Set(draft.text.clone()),
            body_html: Set(draft.html.clone()),
            status: Set(status.as_str().to_owned()),
            attempts: Set(0),
            error: Set(draft.error.clone()),
            event_id: Set(draft.event_id.clone()),
            version: Set(0),
            next_attempt_at: Set(now),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(conn)
        .await
    }

    pub async fn get(&self, id: &str) -> Result<Option<Record>, DbErr> {
        Entity::find_by_id(id.to_owned()).one(&self.db).await
    }

    /// Page `page` of the records `filter` picks, newest first.
    pub async fn list(
        &self,
        filter: &Filter,
        page: u64,
        per_page: u64,
    ) -> Result<(Vec<Record>, u64), DbErr> {
        let mut select = Entity::find();
        if let Some(user) = &filter.user_id {
            select = select.filter(Column::UserId.eq(user.clone()));
        }
        if let Some(status) = filter.status {
            select = select.filter(Column::Status.eq(status.as_str()));
        }
        if let Some(kind) = &filter.kind {
            select = select.filter(Column::Kind.eq(kind.clone()));
        }
        let select = select
            .order_by_desc(Column::CreatedAt)
            .order_by_desc(Column::Id);
        emporium_platform::db::paged(&self.db, select, page, per_page).await
    }

    /// The records of the event `event_id`, oldest first.
    pub async fn of_event(&self, event_id: &str) -> Result<Vec<Record>, DbErr> {
        Entity::find()
            .filter(Column::EventId.eq(event_id))
            .order_by_asc(Column::CreatedAt)
            .all(&self.db)
            .await
    }

    /// Queued records whose time has come, the longest waiting first.
    pub async fn due(&self, now: DateTime<Utc>, limit: u64) -> Result<Vec<Record>, DbErr> {
        Entity::find()
            .filter(Column::Status.eq(Status::Queued.as_str()))
            .filter(Column::NextAttemptAt.lte(now))
            .order_by_asc(Column::NextAttemptAt)
            .limit(limit)
            .all(&self.db)
            .await
    }

    /// When the next queued record falls due, if any is queued.
    pub async fn next_due(&self) -> Result<Option<DateTime<Utc>>, DbErr> {
        Ok(Entity::find()
            .filter(Column::Status.eq(Status::Queued.as_str()))
            .order_by_asc(Column::NextAttemptAt)
            .one(&self.db)
            .await?
            .map(|r| r.next_attempt_at))
    }

    pub async fn queued(&self) -> Result<u64, DbErr> {
        Entity::find()
            .filter(Column::Status.eq(Status::Queued.as_str()))
            .count(&self.db)
            .await
    }

    /// Takes `record` for one attempt until `lease_until`, if no one took
    /// or changed it since it was read.
    pub async fn take(&self, record: &Record, lease_until: DateTime<Utc>) -> Result<bool, DbErr> {
        let taken = Entity::update_many()
            .col_expr(Column::NextAttemptAt, Expr::value(lease_until))
            .col_expr(Column::Version, Expr::value(record.version + 1))
            .filter(Column::Id.eq(record.id.clone()))
            .filter(Column::Version.eq(record.version))
            .filter(Column::Status.eq(Status::Queued.as_str()))
            .exec(&self.db)
            .await?;
        Ok(taken.rows_affected == 1)
    }

    /// Settles an attempt on a record taken at `version`: its new status,
    /// attempts, error and, while queued, when to try again.
    pub async fn settle(&self, id: &str, version: i64, outcome: Outcome) -> Result<bool, DbErr> {
        let now = Utc::now();
        let (status, attempts, error, next) = match outcome {
            Outcome::Sent { attempts } => (Status::Sent, attempts, None, now),
            Outcome::Retry {
                attempts,
                error,
                at,
            } => (Status::Queued, attempts, Some(error), at),
            Outcome::Failed { attempts, error } => (Status::Failed, attempts, Some(error), now),
            Outcome::Deferred { attempts, note, at } => (Status::Queued, attempts, Some(note), at),
        };
        let settled = Entity::update_many()
            .col_expr(Column::Status, Expr::value(status.as_str()))
            .col_expr(Column::Attempts, Expr::value(attempts))
            .col_expr(Column::Error, Expr::value(error))
            .col_expr(Column::NextAttemptAt, Expr::value(next))
            .col_expr(Column::UpdatedAt, Expr::value(now))
            .col_expr(Column::Version, Expr::value(version + 1))
            .filter(Column::Id.eq(id))
            .filter(Column::Version.eq(version))
            .exec(&self.db)
            .await?;
        Ok(settled.rows_affected == 1)
    }
}

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Sent {
        attempts: i32,
    },
    Retry {
        attempts: i32,
        error: String,
        at: DateTime<Utc>,
    },
    Failed {
        attempts: i32,
        error: String,
    },
    /// Not tried: the recipient's budget is spent until `at`.
    Deferred {
        attempts: i32,
        note: String,
        at: DateTime<Utc>,
    },
}

/// The channel a record travels on.
pub fn channel_of(record: &Record) -> Option<Channel> {
    Channel::parse(&record.channel).ok()
}
