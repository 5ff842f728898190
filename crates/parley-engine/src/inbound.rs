//! Inbound messages beyond their first store: edits and revokes applied to the message they
//! name (whichever arrives first), the media fetcher (Meta's media endpoint → a file under
//! the data directory named by its SHA-256), and the reads the API and console serve.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use parley_domain::{ApplicationId, InboundBody, InboundContent, MediaState};
use parley_meta::{Download, GraphError, InboundMessage};
use parley_store::{
    InboundMediaRecord, InboundMessageRecord, InboundRecord, MediaOutcome, NewInboundMedia,
};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::{Engine, EngineError, ErrorKind};

/// The media object of `body` to fetch, if it names one.
pub(crate) fn media_to_fetch(body: &InboundBody) -> Option<NewInboundMedia> {
    let media = body.media().filter(|m| !m.id.is_empty())?;
    Some(NewInboundMedia {
        media_id: media.id.clone(),
        declared_mime: media.mime_type.clone(),
        declared_sha256: media.sha256.clone(),
    })
}

/// After a message is stored the first time: an edit or revoke applies to its original; any
/// other message takes the edits and revokes that arrived before it (Meta does not promise
/// order); a media wakes the fetcher.
pub(crate) async fn after_recorded(
    engine: &Engine,
    record: &InboundRecord,
    body: &InboundBody,
    notes: &mut Vec<String>,
) -> parley_store::Result<()> {
    let app = &record.application_id;
    match &body.content {
        InboundContent::Edit {
            original_message_id,
            message,
        } => {
            if !apply_edit(
                engine,
                app,
                original_message_id,
                record.wamid.as_str(),
                message,
                record.received_at,
            )
            .await?
            {
                notes.push(format!(
                    "edit {} of {original_message_id}: the original is not stored (yet); applied when it arrives",
                    record.wamid
                ));
            }
        }
        InboundContent::Revoke {
            original_message_id,
        } => {
            if !engine
                .store
                .apply_inbound_revoke(app, original_message_id, record.received_at)
                .await?
            {
                notes.push(format!(
                    "revoke {} of {original_message_id}: the original is not stored (yet); applied when it arrives",
                    record.wamid
                ));
            }
        }
        _ => {
            for change in engine
                .store
                .inbound_changes_of(app, record.wamid.as_str())
                .await?
            {
                apply_stored_change(engine, app, record.wamid.as_str(), &change).await?;
            }
        }
    }
    if record.media.is_some() {
        engine.media_wake.notify_one();
    }
    Ok(())
}

async fn apply_edit(
    engine: &Engine,
    app: &ApplicationId,
    original: &str,
    edit: &str,
    message: &InboundContent,
    at: i64,
) -> parley_store::Result<bool> {
    let content = serde_json::to_value(message).unwrap_or_default();
    engine
        .store
        .apply_inbound_edit(app, original, edit, message.text().as_deref(), &content, at)
        .await
}

/// An edit or revoke stored before its original, applied now.
async fn apply_stored_change(
    engine: &Engine,
    app: &ApplicationId,
    original: &str,
    change: &InboundMessageRecord,
) -> parley_store::Result<()> {
    match body_of(change).content {
        InboundContent::Edit { message, .. } => {
            apply_edit(
                engine,
                app,
                original,
                change.wamid.as_str(),
                &message,
                change.received_at,
            )
            .await?;
        }
        InboundContent::Revoke { .. } => {
            engine
                .store
                .apply_inbound_revoke(app, original, change.received_at)
                .await?;
        }
        _ => {}
    }
    Ok(())
}

/// The normalized body of a stored message: as stored, or read from the raw message for rows
/// stored before bodies were kept.
pub fn body_of(record: &InboundMessageRecord) -> InboundBody {
    if let Some(body) = record
        .body
        .as_ref()
        .and_then(|b| serde_json::from_value::<InboundBody>(b.clone()).ok())
    {
        return body;
    }
    match serde_json::from_value::<InboundMessage>(record.raw.clone()) {
        Ok(msg) => msg.body(),
        Err(_) => InboundBody {
            content: InboundContent::Unknown {
                original_type: Some(record.kind.as_str().to_owned()),
            },
            context: None,
            referral: None,
            errors: Vec::new(),
            group_id: None,
        },
    }
}

/// A page of a contact's inbound messages and the cursor of the next page.
pub struct InboundPage {
    pub messages: Vec<InboundMessageRecord>,
    pub next_cursor: Option<String>,
}

impl Engine {
    /// The inbound messages of the contact `key` (phone, BSUID or parent BSUID), newest
    /// first; `after` is the previous page's cursor.
    pub async fn contact_inbound_messages(
        &self,
        app: &ApplicationId,
        key: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<InboundPage, EngineError> {
        let address = self.contact_address(app, key).await?;
        let contact = self
            .store
            .audience_contact(app, &address)
            .await?
            .ok_or_else(|| crate::audience::contact_not_found(&address))?;
        let before = match after {
            None | Some("") => None,
            Some(cursor) => Some(parse_cursor(cursor)?),
        };
        let limit = limit.clamp(1, 200);
        let mut messages = self
            .store
            .contact_inbound(
                app,
                &contact.contact.id,
                before.as_ref().map(|(at, w)| (*at, w.as_str())),
                limit + 1,
            )
            .await?;
        let next_cursor = if messages.len() > limit as usize {
            messages.truncate(limit as usize);
            messages
                .last()
                .map(|m| format!("{}.{}", m.received_at, m.wamid))
        } else {
            None
        };
        Ok(InboundPage {
            messages,
            next_cursor,
        })
    }

    /// The stored file of an inbound message's media, for a signed-in user of `app`: its
    /// path and type. Another application's message is not found.
    pub async fn inbound_media_file(
        &self,
        app: &ApplicationId,
        wamid: &str,
    ) -> Result<(PathBuf, String), EngineError> {
        let not_found = || {
            EngineError::new(
                ErrorKind::NotFound,
                "media_not_found",
                "no stored media for this message in this application",
            )
        };
        let message = self
            .store
            .inbound_message(app, wamid)
            .await?
            .ok_or_else(not_found)?;
        let media = message.media.ok_or_else(not_found)?;
        let (MediaState::Stored, Some(sha), Some(dir)) =
            (media.state, media.sha256, self.config.media.dir.as_ref())
        else {
            return Err(not_found());
        };
        let mime = media
            .mime_type
            .unwrap_or_else(|| "application/octet-stream".into());
        Ok((media_path(dir, &sha), mime))
    }
}

fn parse_cursor(cursor: &str) -> Result<(i64, String), EngineError> {
    let bad = || {
        EngineError::bad_request("invalid_cursor", "the cursor is not one this API gave")
            .field("after")
    };
    let (at, wamid) = cursor.split_once('.').ok_or_else(bad)?;
    let at = at.parse::<i64>().map_err(|_| bad())?;
    if wamid.is_empty() {
        return Err(bad());
    }
    Ok((at, wamid.to_owned()))
}

/// `<dir>/<sha[0..2]>/<sha>`.
pub fn media_path(dir: &Path, sha256: &str) -> PathBuf {
    let prefix = sha256.get(..2).unwrap_or("xx");
    dir.join(prefix).join(sha256)
}

/// How long a claimed media is this node's before another may try it.
const MEDIA_LEASE: Duration = Duration::from_secs(5 * 60);
const MEDIA_BATCH: u32 = 8;

/// The media fetcher: runs until `shutdown`, woken when a media is recorded.
pub async fn run_media(engine: Engine, shutdown: CancellationToken) {
    let Some(dir) = engine.config.media.dir.clone() else {
        tracing::info!("no media directory configured: inbound media are not fetched");
        return;
    };
    // Claims name this node while it holds its node lease (`fetch_due`): take it first.
    let me = crate::leases::node_resource(&engine.node().id);
    if !engine.until_held(&me, &shutdown).await {
        return;
    }
    let mut last_sweep = i64::MIN;
    loop {
        let notified = engine.media_wake.notified();
        match fetch_due(&engine, &dir).await {
            Ok(n) if n > 0 => continue,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "media fetching paused by a storage error"),
        }
        let now = engine.now();
        // Fetching is shared (claims are leased rows); the sweep is one node's: the one
        // holding the job's lease.
        if now.saturating_sub(last_sweep) > 3_600_000
            && engine.leases.holds(crate::leases::JOB_MEDIA_CLEANUP)
        {
            last_sweep = now;
            if let Err(e) = sweep(&engine, &dir).await {
                tracing::warn!(error = %e, "media retention sweep failed");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = notified => {}
            _ = tokio::time::sleep(engine.config.poll_interval) => {}
        }
    }
}

/// Fetches the media due now; returns how many were tried.
pub async fn fetch_due(engine: &Engine, dir: &Path) -> parley_store::Result<usize> {
    let now = engine.now();
    let lease = now + i64::try_from(MEDIA_LEASE.as_millis()).unwrap_or(i64::MAX);
    // The claims name this node while it holds its node lease: killed mid-fetch, its claims
    // are taken again once that lease lapses (seconds), not after `MEDIA_LEASE`.
    let me = engine.node().id;
    let node = engine
        .leases
        .holds(&crate::leases::node_resource(&me))
        .then_some(me.as_str());
    let claimed = engine
        .store
        .claim_inbound_media(now, lease, MEDIA_BATCH, node)
        .await?;
    let n = claimed.len();
    for media in claimed {
        let outcome = fetch_one(engine, dir, &media).await;
        let outcome = match outcome {
            MediaOutcome::Retry { error, .. }
                if media.attempts >= engine.config.media.max_attempts =>
            {
                MediaOutcome::Failed(format!(
                    "media_unavailable: gave up after {} attempts: {error}",
                    media.attempts
                ))
            }
            other => other,
        };
        match &outcome {
            MediaOutcome::Stored { .. } => {
                metrics::counter!("parley_inbound_media_stored_total").increment(1);
            }
            MediaOutcome::Refused(reason) | MediaOutcome::Failed(reason) => {
                tracing::warn!(wamid = %media.wamid, reason, "inbound media not kept");
            }
            MediaOutcome::Retry { error, .. } => {
                tracing::info!(wamid = %media.wamid, error, "inbound media fetch will be retried");
            }
        }
        engine
            .store
            .finish_inbound_media(&media.wamid, &outcome, engine.now())
            .await?;
    }
    Ok(n)
}

fn retry(engine: &Engine, media: &InboundMediaRecord, error: String) -> MediaOutcome {
    let base = engine.config.base_backoff.as_millis() as i64;
    let cap = engine.config.max_backoff.as_millis() as i64;
    let exp = u32::try_from(media.attempts.clamp(0, 20)).unwrap_or(20);
    let delay = base.saturating_mul(1 << exp).min(cap).max(1);
    let jitter = rand::random_range(0..=delay / 4);
    MediaOutcome::Retry {
        error,
        next_attempt_at: engine.now() + delay + jitter,
    }
}

/// Meta's answer says the media will never come (a bad id, no access): no retry.
fn is_final(e: &GraphError) -> bool {
    match e {
        GraphError::Api { http_status, error } => {
            (400..500).contains(http_status)
                && *http_status != 404
                && *http_status != 429
                && !matches!(error.code, 4 | 80007 | 130429 | 131016 | 131000 | 2)
        }
        _ => false,
    }
}

async fn fetch_one(engine: &Engine, dir: &Path, media: &InboundMediaRecord) -> MediaOutcome {
    let max = engine.config.media.max_bytes;
    let number = match engine.store.phone_number(&media.phone_number_id).await {
        Ok(Some(n)) => n,
        Ok(None) => {
            return MediaOutcome::Failed(
                "number_disconnected: the number that received it is no longer connected".into(),
            );
        }
        Err(e) => return retry(engine, media, e.to_string()),
    };
    let token = match engine.store.platform_token(&number.platform_id).await {
        Ok(t) => t,
        Err(e) => return retry(engine, media, e.to_string()),
    };
    let info = match engine
        .graph
        .get_media(&token, &media.media_id, media.phone_number_id.as_str())
        .await
    {
        Ok(info) => info,
        Err(e) if is_final(&e) => return MediaOutcome::Failed(format!("media_unavailable: {e}")),
        Err(e) => return retry(engine, media, e.to_string()),
    };
    if let Some(size) = info
        .file_size
        .as_deref()
        .and_then(|s| s.parse::<u64>().ok())
        && size > max
    {
        return MediaOutcome::Refused(format!(
            "media_too_large: Meta declares {size} bytes; the limit is {max}"
        ));
    }
    let (bytes, served_type) = match engine.graph.download_media(&token, &info.url, max).await {
        Ok(Download::Bytes {
            bytes,
            content_type,
        }) => (bytes, content_type),
        Ok(Download::TooLarge) => {
            return MediaOutcome::Refused(format!(
                "media_too_large: larger than the limit of {max} bytes"
            ));
        }
        // An expired URL answers 404: the next attempt asks Meta for a fresh one.
        Err(e) if is_final(&e) => return MediaOutcome::Failed(format!("media_unavailable: {e}")),
        Err(e) => return retry(engine, media, e.to_string()),
    };
    let declared = media
        .declared_mime
        .as_deref()
        .or(info.mime_type.as_deref())
        .map(base_type);
    if let Err(reason) = check_type(declared.as_deref(), served_type.as_deref(), &bytes) {
        return MediaOutcome::Refused(reason);
    }
    let digest = Sha256::digest(&bytes);
    let sha = hex::encode(digest);
    if let Some(expected) = media.declared_sha256.as_deref().or(info.sha256.as_deref())
        && !sha_matches(expected, &digest, &sha)
    {
        return MediaOutcome::Refused(format!(
            "media_hash_mismatch: the bytes' SHA-256 is {sha}, Meta declared {expected}"
        ));
    }
    if let Err(e) = write_file(dir, &sha, &bytes).await {
        return retry(engine, media, format!("cannot write the media file: {e}"));
    }
    MediaOutcome::Stored {
        sha256: sha,
        size_bytes: bytes.len() as i64,
        mime_type: declared.unwrap_or_else(|| "application/octet-stream".into()),
    }
}

fn base_type(mime: &str) -> String {
    let base = mime
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match base.as_str() {
        "image/jpg" => "image/jpeg".into(),
        _ => base,
    }
}

/// Meta's hash is hex in some payloads and base64 in others: either matches.
fn sha_matches(expected: &str, digest: &[u8], hex: &str) -> bool {
    let expected = expected.trim();
    expected.eq_ignore_ascii_case(hex)
        || expected == base64::engine::general_purpose::STANDARD.encode(digest)
        || expected == base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
        || expected == base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
}

/// The type the first bytes show, for the formats Meta takes whose signature is certain.
fn sniff(bytes: &[u8]) -> Option<&'static str> {
    match bytes {
        [0xFF, 0xD8, 0xFF, ..] => Some("image/jpeg"),
        [0x89, b'P', b'N', b'G', ..] => Some("image/png"),
        [
            b'R',
            b'I',
            b'F',
            b'F',
            _,
            _,
            _,
            _,
            b'W',
            b'E',
            b'B',
            b'P',
            ..,
        ] => Some("image/webp"),
        [b'%', b'P', b'D', b'F', ..] => Some("application/pdf"),
        [b'O', b'g', b'g', b'S', ..] => Some("audio/ogg"),
        _ => None,
    }
}

/// The served type must be the declared one, and the bytes must look like it where their
/// signature is certain (an image, a PDF, an Ogg audio).
fn check_type(declared: Option<&str>, served: Option<&str>, bytes: &[u8]) -> Result<(), String> {
    let Some(declared) = declared.filter(|d| !d.is_empty()) else {
        return Ok(());
    };
    if let Some(served) = served.map(base_type).filter(|s| !s.is_empty())
        && served != declared
        && served != "application/octet-stream"
    {
        return Err(format!(
            "media_type_mismatch: Meta declared {declared}, the download is {served}"
        ));
    }
    let signed = declared.starts_with("image/") && declared != "image/gif"
        || declared == "application/pdf"
        || declared == "audio/ogg";
    match sniff(bytes) {
        Some(seen) if seen != declared => Err(format!(
            "media_type_mismatch: Meta declared {declared}, the content is {seen}"
        )),
        None if signed => Err(format!(
            "media_type_mismatch: Meta declared {declared}, the content is not {declared}"
        )),
        _ => Ok(()),
    }
}

/// Writes the file under its hash: into a temporary file beside it (`.<sha>.<random>`),
/// synced, then renamed, and the directory synced, so the name only ever shows complete bytes
/// (a kill, or a power cut, mid-write leaves at most the temporary file, which `sweep`
/// removes).
async fn write_file(dir: &Path, sha: &str, bytes: &[u8]) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let path = media_path(dir, sha);
    if tokio::fs::try_exists(&path).await.unwrap_or(false) {
        return Ok(());
    }
    let parent = path.parent().unwrap_or(dir);
    tokio::fs::create_dir_all(parent).await?;
    let tmp = parent.join(format!("{TEMP_PREFIX}{sha}.{}", rand::random::<u64>()));
    let written = async {
        let mut file = tokio::fs::File::create(&tmp).await?;
        file.write_all(bytes).await?;
        file.sync_all().await?;
        drop(file);
        tokio::fs::rename(&tmp, &path).await
    }
    .await;
    if let Err(e) = written {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(e);
    }
    if let Ok(d) = tokio::fs::File::open(parent).await {
        let _ = d.sync_all().await;
    }
    Ok(())
}

/// The start of a media file being written (`write_file`).
const TEMP_PREFIX: &str = ".";

/// A temporary media file this old was left by a write that will never finish (the node was
/// killed between writing and renaming it): a write takes far less than a claim's lease.
const TEMP_STALE: Duration = MEDIA_LEASE;

/// Removes media past the retention setting, files no stored media names any more (an
/// erased contact's), and temporary files a killed fetch left (older than `TEMP_STALE`).
pub async fn sweep(engine: &Engine, dir: &Path) -> parley_store::Result<()> {
    if let Some(retention) = engine.config.media.retention {
        let before = engine.now() - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        for sha in engine.store.expire_inbound_media(before).await? {
            let _ = tokio::fs::remove_file(media_path(dir, &sha)).await;
        }
    }
    let Ok(mut prefixes) = tokio::fs::read_dir(dir).await else {
        return Ok(());
    };
    while let Ok(Some(prefix)) = prefixes.next_entry().await {
        let Ok(mut files) = tokio::fs::read_dir(prefix.path()).await else {
            continue;
        };
        while let Ok(Some(file)) = files.next_entry().await {
            let name = file.file_name().to_string_lossy().into_owned();
            // Young files are left alone: another node may be writing one, or about to
            // record the media it just stored.
            let old = file
                .metadata()
                .await
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > TEMP_STALE);
            if !old {
                continue;
            }
            if name.starts_with(TEMP_PREFIX) {
                tracing::info!(file = %file.path().display(), "removing a media file a killed fetch left half-written");
                let _ = tokio::fs::remove_file(file.path()).await;
            } else if name.len() == 64
                && name.bytes().all(|b| b.is_ascii_hexdigit())
                && !engine.store.media_hash_in_use(&name).await?
            {
                let _ = tokio::fs::remove_file(file.path()).await;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_png_declared_as_jpeg_is_refused() {
        let png = [0x89, b'P', b'N', b'G', 0, 0];
        assert!(check_type(Some("image/jpeg"), Some("image/jpeg"), &png).is_err());
        assert!(check_type(Some("image/png"), Some("image/png"), &png).is_ok());
        assert!(check_type(Some("image/png"), Some("text/html"), &png).is_err());
        assert!(check_type(Some("image/jpeg"), None, b"hello").is_err());
        assert!(check_type(Some("video/mp4"), None, b"....ftyp").is_ok());
    }

    #[test]
    fn hashes_match_in_hex_or_base64() {
        let digest = Sha256::digest(b"x");
        let hex = hex::encode(digest);
        assert!(sha_matches(&hex.to_uppercase(), &digest, &hex));
        let b64 = base64::engine::general_purpose::STANDARD.encode(digest);
        assert!(sha_matches(&b64, &digest, &hex));
        assert!(!sha_matches("abc", &digest, &hex));
    }
}
