//! One store under test, opened through `parley_store::open` by URL like the server does,
//! plus what the contract cases need beyond the trait: a second node on the same database and
//! a look at raw columns.

use std::sync::Arc;

use parley_domain::PlatformId;
use parley_store::{SecretCipher, Store};
use sqlx::Connection;

use crate::pg::TestDb;

/// Runs `body` with `c` a fresh connection of the backend's own driver (outside the store):
/// one body for both, its statement written with `$1` placeholders, which both take.
macro_rules! on_own_connection {
    ($backend:expr, |$c:ident| $body:expr) => {
        match $backend.kind {
            Kind::Sqlite => {
                let mut $c = sqlx::SqliteConnection::connect(&$backend.url)
                    .await
                    .expect("connect");
                $body
            }
            Kind::Postgres => {
                let mut $c = sqlx::PgConnection::connect(&$backend.url)
                    .await
                    .expect("connect");
                $body
            }
        }
    };
}

pub enum Kind {
    Sqlite,
    Postgres,
}

pub struct Backend {
    pub kind: Kind,
    pub store: Arc<dyn Store>,
    url: String,
    key: [u8; 32],
    _dir: Option<tempfile::TempDir>,
    db: Option<TestDb>,
}

impl std::ops::Deref for Backend {
    type Target = dyn Store;
    fn deref(&self) -> &dyn Store {
        &*self.store
    }
}

impl Backend {
    pub async fn sqlite() -> Backend {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("parley.db").display());
        let key = rand::random();
        let store = parley_store::open(&url, SecretCipher::from_key(&key))
            .await
            .expect("open SQLite");
        Backend {
            kind: Kind::Sqlite,
            store,
            url,
            key,
            _dir: Some(dir),
            db: None,
        }
    }

    pub async fn postgres() -> Backend {
        let db = TestDb::create().await;
        let key = rand::random();
        let store = parley_store::open(&db.url, SecretCipher::from_key(&key))
            .await
            .unwrap_or_else(|e| panic!("open PostgreSQL at {}: {e}", db.url));
        Backend {
            kind: Kind::Postgres,
            store,
            url: db.url.clone(),
            key,
            _dir: None,
            db: Some(db),
        }
    }

    /// The database URL the store was opened with.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &'static str {
        match self.kind {
            Kind::Sqlite => "sqlite",
            Kind::Postgres => "postgres",
        }
    }

    /// Another node on the same database (same master key unless `key` is given).
    pub async fn another_node(&self, key: Option<[u8; 32]>) -> Arc<dyn Store> {
        let cipher = SecretCipher::from_key(&key.unwrap_or(self.key));
        parley_store::open(&self.url, cipher)
            .await
            .expect("open a second store on the same database")
    }

    /// The `platforms.access_token` column as stored.
    pub async fn raw_platform_token(&self, id: &PlatformId) -> Vec<u8> {
        on_own_connection!(self, |c| sqlx::query_scalar(
            "SELECT access_token FROM platforms WHERE id = $1"
        )
        .bind(id.as_str())
        .fetch_one(&mut c)
        .await
        .expect("raw token"))
    }

    /// The `users.totp_secret` column as stored.
    pub async fn raw_totp_secret(&self, user: &parley_domain::UserId) -> Option<Vec<u8>> {
        on_own_connection!(self, |c| sqlx::query_scalar(
            "SELECT totp_secret FROM users WHERE id = $1"
        )
        .bind(user.as_str())
        .fetch_one(&mut c)
        .await
        .expect("raw secret"))
    }

    /// Runs one statement outside the store (a test that damages what the store keeps).
    pub async fn raw_execute(&self, sql: &'static str) {
        on_own_connection!(self, |c| {
            sqlx::query(sql)
                .execute(&mut c)
                .await
                .expect("raw statement");
        })
    }

    /// One `bigint` a statement answers (a count, a sum), read over its own connection.
    pub async fn raw_i64(&self, sql: &'static str) -> i64 {
        on_own_connection!(self, |c| sqlx::query_scalar(sql)
            .fetch_one(&mut c)
            .await
            .expect("raw scalar"))
    }

    pub async fn finish(self) {
        drop(self.store);
        if let Some(db) = self.db {
            db.finish().await;
        }
    }
}
