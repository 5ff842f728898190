//! What `AudienceStore` does its own way on PostgreSQL; the rest is `shared/audience.rs`.
//! Upserts lock each phone (transaction-scoped advisory locks, in sorted order) before reading
//! the stored tags they merge into, so concurrent imports on several nodes never lose a tag.

use parley_domain::ApplicationId;
use sqlx::{PgConnection, Postgres, QueryBuilder};

use crate::audience::{AudienceContact, ContactQuery};
use crate::{PostgresStore, Result};

impl PostgresStore {
    /// Locks `phones` of `app` until the transaction ends.
    pub(crate) async fn lock_phones(
        conn: &mut PgConnection,
        app: &ApplicationId,
        phones: &[&str],
    ) -> Result<()> {
        let mut keys: Vec<String> = phones
            .iter()
            .map(|p| format!("{}/{p}", app.as_str()))
            .collect();
        keys.sort();
        keys.dedup();
        sqlx::query(
            "SELECT count(pg_advisory_xact_lock(hashtextextended(k, 7))) FROM (SELECT k FROM unnest($1::text[]) k ORDER BY k) s",
        )
        .bind(&keys)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// A page of `list_audience`, row by row.
    pub(crate) async fn audience_page(
        &self,
        app: &ApplicationId,
        q: &ContactQuery<'_>,
    ) -> Result<Vec<AudienceContact>> {
        Self::audience_page_on(self.reader(), app, q).await
    }

    /// `audience_page` on a given connection or pool.
    pub(crate) async fn audience_page_on<'e, E>(
        ex: E,
        app: &ApplicationId,
        q: &ContactQuery<'_>,
    ) -> Result<Vec<AudienceContact>>
    where
        E: sqlx::Executor<'e, Database = Postgres>,
    {
        let mut qb = QueryBuilder::<Postgres>::new(
            "SELECT id, application_id, phone, bsuid, parent_bsuid, username, wa_id, name, tags, last_inbound_at, created_at, updated_at, locale, timezone, subscription, subscription_source, subscription_at FROM contacts WHERE application_id = ",
        );
        Self::push_contact_page(&mut qb, app, q.after, q.search, q.segment, q.now, q.limit);
        let rows = qb.build().fetch_all(ex).await?;
        rows.iter()
            .map(crate::postgres::audience_from_row)
            .collect()
    }
}
