//! The store contract, run on both backends: every case in these modules runs once on SQLite
//! (a temp file) and once on PostgreSQL (a fresh database; see `pg.rs` for how the server is
//! found or started). A case is an `async fn(&Backend)`; `contract!` makes the two tests.
//!
//! Add an area's cases in `<area>.rs` and list them in that module's `contract!`.

mod access;
mod audience;
mod backend;
mod batches;
mod campaigns;
mod coexistence;
mod contact_identity;
mod contacts;
mod fixtures;
mod identity;
mod lanes;
mod leases;
mod messages;
mod migrations;
mod nodes;
mod pg;
mod platforms;
mod schema;
mod stats;
mod status_log;
mod statuses;
mod tenancy;
mod webhooks;

/// Makes `sqlite::<case>` and `postgres::<case>` tests of each listed `async fn(&Backend)`.
macro_rules! contract {
    ($($case:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let backend = crate::backend::Backend::sqlite().await;
                    super::$case(&backend).await;
                    backend.finish().await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let backend = crate::backend::Backend::postgres().await;
                    super::$case(&backend).await;
                    backend.finish().await;
                }
            )+
        }
    };
}
pub(crate) use contract;

#[tokio::test]
async fn open_refuses_other_urls() {
    let cipher = parley_store::SecretCipher::from_key(&[1; 32]);
    let err = parley_store::open("mysql://localhost/parley", cipher)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("unsupported database URL"), "{err}");
}
