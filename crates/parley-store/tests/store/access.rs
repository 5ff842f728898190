//! API tokens (scopes, expiry, last use, revocation, pages) and the audit log (pages per
//! application, retention).

use parley_domain::{ApplicationId, AuditEntryId, Scope, Scopes, TokenId};
use parley_store::access::{ActorKind, AuditEntry, NewToken};

use crate::backend::Backend;
use crate::fixtures::{T0, tenant};

crate::contract!(
    tokens_scopes_pages_last_use_and_revocation,
    audit_entries_page_per_application_and_expire,
);

fn new_token(app: &ApplicationId, hash: &str, scopes: Scopes, at: i64) -> NewToken {
    NewToken {
        id: TokenId::new(),
        application_id: app.clone(),
        token_hash: hash.into(),
        label: format!("label {hash}"),
        scopes,
        expires_at: Some(at + 1_000),
        now: at,
    }
}

async fn tokens_scopes_pages_last_use_and_revocation(b: &Backend) {
    let (one, two) = (tenant(&**b, 1).await, tenant(&**b, 2).await);
    let read = Scopes::from_list(&[Scope::Read]).expect("scopes");
    let mut ids = Vec::new();
    for i in 0..3 {
        let t = new_token(&one.app, &format!("h{i}"), read, T0 + i);
        assert!(b.insert_token(&t, 4).await.expect("insert"));
        ids.push(t.id);
    }
    assert!(
        b.insert_token(&new_token(&two.app, "other", Scopes::ALL, T0), 4)
            .await
            .expect("insert")
    );
    // Three live tokens: a cap of 3 takes no fourth (the other application's does not count).
    assert!(
        !b.insert_token(&new_token(&one.app, "h-over", read, T0 + 5), 3)
            .await
            .expect("capped")
    );
    assert!(b.token_by_hash("h-over").await.expect("lookup").is_none());

    let found = b.token_by_hash("h1").await.expect("lookup").expect("token");
    assert_eq!(found.id, ids[1]);
    assert_eq!(found.scopes, read);
    assert_eq!(found.expires_at, Some(T0 + 1 + 1_000));
    assert_eq!(found.label, "label h1");

    let page = b.tokens(&one.app, None, 2).await.expect("page");
    assert_eq!(
        page.iter().map(|t| &t.id).collect::<Vec<_>>(),
        [&ids[2], &ids[1]],
        "newest first"
    );
    let rest = b.tokens(&one.app, Some(&ids[1]), 2).await.expect("page");
    assert_eq!(rest.iter().map(|t| &t.id).collect::<Vec<_>>(), [&ids[0]]);
    assert!(
        b.token(&two.app, &ids[0]).await.expect("get").is_none(),
        "another application's token is not found"
    );

    // The last use is written at most once per gap.
    b.touch_token(&ids[0], T0 + 10, 60_000)
        .await
        .expect("touch");
    b.touch_token(&ids[0], T0 + 20, 60_000)
        .await
        .expect("touch");
    let t = b.token(&one.app, &ids[0]).await.expect("get").expect("t");
    assert_eq!(t.last_used_at, Some(T0 + 10));
    b.touch_token(&ids[0], T0 + 60_010, 60_000)
        .await
        .expect("touch");
    let t = b.token(&one.app, &ids[0]).await.expect("get").expect("t");
    assert_eq!(t.last_used_at, Some(T0 + 60_010));

    assert!(
        b.revoke_token(&two.app, &ids[0], T0 + 5)
            .await
            .expect("revoke")
            .is_none(),
        "another application cannot revoke it"
    );
    let revoked = b
        .revoke_token(&one.app, &ids[0], T0 + 5)
        .await
        .expect("revoke")
        .expect("token");
    assert_eq!(revoked.revoked_at, Some(T0 + 5));
    let again = b
        .revoke_token(&one.app, &ids[0], T0 + 9)
        .await
        .expect("revoke")
        .expect("token");
    assert_eq!(again.revoked_at, Some(T0 + 5), "the first revocation stays");
}

fn entry(app: &ApplicationId, at: i64, action: &str) -> AuditEntry {
    AuditEntry {
        id: AuditEntryId::new(),
        application_id: app.clone(),
        at,
        actor_kind: ActorKind::Token,
        actor_id: TokenId::new().to_string(),
        actor_label: "ci".into(),
        action: action.into(),
        target: Some("cmp_1".into()),
        method: "POST".into(),
        path: "/api/v1/campaigns".into(),
        address: Some("127.0.0.1".into()),
    }
}

async fn audit_entries_page_per_application_and_expire(b: &Backend) {
    let (one, two) = (tenant(&**b, 1).await, tenant(&**b, 2).await);
    let mut ids = Vec::new();
    for i in 0..3 {
        let e = entry(&one.app, T0 + i * 1_000, &format!("campaign.a{i}"));
        b.insert_audit(&e).await.expect("insert");
        ids.push(e.id);
    }
    b.insert_audit(&entry(&two.app, T0, "token.create"))
        .await
        .expect("insert");
    let page = b.audit_entries(&one.app, None, 2).await.expect("page");
    assert_eq!(page.len(), 2);
    assert_eq!(page[0].id, ids[2], "newest first");
    assert_eq!(page[0].action, "campaign.a2");
    assert_eq!(page[0].actor_kind, ActorKind::Token);
    assert_eq!(page[0].address.as_deref(), Some("127.0.0.1"));
    let rest = b
        .audit_entries(&one.app, Some(&page[1].id), 2)
        .await
        .expect("page");
    assert_eq!(rest.iter().map(|e| &e.id).collect::<Vec<_>>(), [&ids[0]]);

    assert_eq!(b.prune_audit(T0 + 1_500).await.expect("prune"), 3);
    let left = b.audit_entries(&one.app, None, 10).await.expect("page");
    assert_eq!(left.iter().map(|e| &e.id).collect::<Vec<_>>(), [&ids[2]]);
}

/// Runs a backend's migrations before 0012 on `pool`, as an install from before scopes had.
async fn migrate_to_0011<DB: sqlx::Database>(dir: &str, pool: &sqlx::Pool<DB>)
where
    DB::Connection: sqlx::migrate::Migrate,
{
    let mut migrator = sqlx::migrate::Migrator::new(std::path::Path::new(dir))
        .await
        .expect("migrations");
    migrator.migrations = migrator
        .migrations
        .iter()
        .filter(|m| m.version < 12)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    migrator.run(pool).await.expect("old migrations");
}

const LEGACY_INSERTS: [&str; 3] = [
    "INSERT INTO accounts (id, name, created_at) VALUES ('acc_0190c3b5a1b27c3e8a1b2c3d4e5f6a7b', 'Old', 1)",
    "INSERT INTO applications (id, account_id, name, created_at) VALUES ('app_0190c3b5a1b27c3e8a1b2c3d4e5f6a7b', 'acc_0190c3b5a1b27c3e8a1b2c3d4e5f6a7b', 'Old app', 1)",
    "INSERT INTO api_tokens (token_hash, application_id, label, created_at) VALUES ('legacy-hash', 'app_0190c3b5a1b27c3e8a1b2c3d4e5f6a7b', 'legacy', 1760000000000)",
];

/// A token made before 0012 gets an id that parses, and every scope, and still works.
async fn legacy_token_keeps_every_scope(store: &dyn parley_store::Store) {
    let token = store
        .token_by_hash("legacy-hash")
        .await
        .expect("lookup")
        .expect("the old token is still there");
    assert_eq!(token.scopes, Scopes::ALL);
    assert_eq!(token.label, "legacy");
    assert!(token.expires_at.is_none() && token.revoked_at.is_none());
    assert!(
        token.id.as_str().starts_with("tok_0199c82cc000"),
        "the id starts with the creation time, as new ids do: {:?}",
        token.id
    );
    let listed = store
        .tokens(&token.application_id, None, 10)
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
    // New tokens get their own ids beside it.
    store
        .add_api_token(&token.application_id, "new-hash", "new", T0)
        .await
        .expect("new token");
}

#[tokio::test]
async fn sqlite_tokens_made_before_scopes_keep_every_scope() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("parley.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let pool = sqlx::SqlitePool::connect(&url).await.expect("sqlite");
    migrate_to_0011(
        concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite"),
        &pool,
    )
    .await;
    for sql in LEGACY_INSERTS {
        sqlx::query(sql).execute(&pool).await.expect("insert");
    }
    pool.close().await;
    let store = parley_store::open(
        &format!("sqlite://{}", path.display()),
        parley_store::SecretCipher::from_key(&[7; 32]),
    )
    .await
    .expect("open runs 0012");
    legacy_token_keeps_every_scope(&*store).await;
}

#[tokio::test]
async fn postgres_tokens_made_before_scopes_keep_every_scope() {
    let db = crate::pg::TestDb::create().await;
    let pool = sqlx::PgPool::connect(&db.url).await.expect("postgres");
    migrate_to_0011(
        concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"),
        &pool,
    )
    .await;
    for sql in LEGACY_INSERTS {
        sqlx::query(sql).execute(&pool).await.expect("insert");
    }
    pool.close().await;
    let store = parley_store::open(&db.url, parley_store::SecretCipher::from_key(&[7; 32]))
        .await
        .expect("open runs 0012");
    legacy_token_keeps_every_scope(&*store).await;
    drop(store);
    db.finish().await;
}
