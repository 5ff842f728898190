//! What `AudienceStore` does its own way on SQLite; the rest is `shared/audience.rs`.

use parley_domain::{ApplicationId, ContactId};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use crate::audience::{AudienceContact, ContactQuery};
use crate::{ContactRecord, Millis, Result, SqliteStore, corrupt};
use parley_domain::Subscription;

/// A contact row as `json_object` gives it in `audience_page`.
#[derive(serde::Deserialize)]
struct AudienceJson {
    id: ContactId,
    application_id: ApplicationId,
    phone: String,
    bsuid: Option<String>,
    parent_bsuid: Option<String>,
    username: Option<String>,
    wa_id: Option<parley_domain::WaId>,
    name: Option<String>,
    tags: parley_domain::Tags,
    last_inbound_at: Option<Millis>,
    created_at: Millis,
    updated_at: Millis,
    locale: Option<String>,
    timezone: Option<String>,
    subscription: String,
    subscription_source: Option<String>,
    subscription_at: Option<Millis>,
}

impl SqliteStore {
    /// Nothing to lock before an upsert reads the stored tags: the one writer runs one
    /// transaction at a time.
    pub(crate) async fn lock_phones(
        _: &mut SqliteConnection,
        _: &ApplicationId,
        _: &[&str],
    ) -> Result<()> {
        Ok(())
    }

    /// A page of `list_audience` as one JSON row: sqlx's driver moves each row to the async
    /// side on its own, and the campaign planner reads whole audiences through here.
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
        E: sqlx::Executor<'e, Database = Sqlite>,
    {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "SELECT json_group_array(json_object('id', id, 'application_id', application_id,
               'phone', phone, 'bsuid', bsuid, 'parent_bsuid', parent_bsuid, 'username', username, 'wa_id', wa_id, 'name', name, 'tags', json(tags),
               'last_inbound_at', last_inbound_at, 'created_at', created_at, 'updated_at', updated_at,
               'locale', locale, 'timezone', timezone, 'subscription', subscription,
               'subscription_source', subscription_source, 'subscription_at', subscription_at))
             FROM (SELECT * FROM contacts WHERE application_id = ",
        );
        Self::push_contact_page(&mut qb, app, q.after, q.search, q.segment, q.now, q.limit);
        qb.push(")");
        let json: String = qb.build_query_scalar().fetch_one(ex).await?;
        let rows: Vec<AudienceJson> =
            serde_json::from_str(&json).map_err(|e| corrupt("contacts", e))?;
        rows.into_iter()
            .map(|r| {
                Ok(AudienceContact {
                    subscription: Subscription::parse(&r.subscription)
                        .ok_or_else(|| corrupt("subscription", &r.subscription))?,
                    contact: ContactRecord {
                        id: r.id,
                        application_id: r.application_id,
                        phone: r.phone,
                        bsuid: r.bsuid,
                        parent_bsuid: r.parent_bsuid,
                        username: r.username,
                        wa_id: r.wa_id,
                        name: r.name,
                        tags: r.tags,
                        last_inbound_at: r.last_inbound_at,
                        created_at: r.created_at,
                        updated_at: r.updated_at,
                    },
                    locale: r.locale,
                    timezone: r.timezone,
                    subscription_source: r.subscription_source,
                    subscription_at: r.subscription_at,
                })
            })
            .collect()
    }
}
