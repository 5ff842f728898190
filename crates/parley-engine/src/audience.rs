//! Audience services: contacts (upsert with partial tag updates, lists by segment, detail,
//! erasure), segments (parse with positions, live counts, samples), personalization previews,
//! contact imports (CSV in any of the encodings and separators spreadsheets save, NDJSON, or
//! an `.xlsx` workbook's first sheet; streamed in constant memory, in chunks of
//! [`IMPORT_CHUNK`] rows per transaction; how the file becomes text is in `import_file.rs`)
//! and opt-out keywords.

use std::borrow::Cow;
use std::fmt::Display;

use futures::{Stream, StreamExt};
use parley_domain::{
    ApplicationId, BoundTemplate, Bsuid, DynamicText, E164, ImportId, ImportState, Region,
    RenderedTemplate, Segment, SegmentId, SkipReason, Subscription, TagValue, Tags, VariableInput,
    is_bsuid_address,
};
use parley_store::audience::*;
use parley_store::{ContactIdentity, MessageRecord};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::clock::to_datetime;
use crate::import_file::{
    DETECT_BYTES, MAX_XLSX_BYTES, TextDecoder, decode_all, detect_encoding, detect_separator,
    is_zip, read_xlsx, xlsx_upload_too_large,
};
pub use crate::import_file::{Separator, TextEncoding};
use crate::messages::ContactTags;
use crate::{Engine, EngineError, ErrorKind};

/// Rows upserted per transaction during an import.
pub const IMPORT_CHUNK: usize = 1_000;
/// Longest tag name.
pub const MAX_TAG_NAME: usize = 64;
/// Longest text tag value (and list item), in characters: what a template parameter takes.
pub const MAX_TAG_VALUE_CHARS: usize = 1024;
/// Most items of a list tag.
pub const MAX_TAG_LIST_ITEMS: usize = 100;
/// Longest row an import takes (bytes); longer rows are rejected.
pub const MAX_ROW_BYTES: usize = 64 * 1024;
/// Longest contact search (`search`): part of a number or a name.
pub const MAX_SEARCH_CHARS: usize = 100;
/// Saved segments an application keeps at most: the new-campaign form offers every one in a
/// picker, and a business defines tens, not thousands (a filter covers any audience without
/// being saved). A create past it is 409 `segment_limit_reached`.
pub const MAX_SEGMENTS: u64 = 500;

/// A contact write from the API or the console.
#[derive(Debug, Clone, Default)]
pub struct ContactInput {
    pub name: Option<String>,
    pub locale: Option<String>,
    pub timezone: Option<String>,
    /// Tag name → JSON value; `null` removes the tag.
    pub tags: serde_json::Map<String, Value>,
    /// `opted_in` or `opted_out`.
    pub subscription: Option<String>,
    /// Where the change comes from (`api`, `console`).
    pub source: &'static str,
    /// A business-scoped user id (BSUID) to link to the contact (META_2026 §3.8).
    pub bsuid: Option<String>,
}

/// A contact with its history, for the detail views.
pub struct ContactDetail {
    pub contact: AudienceContact,
    pub history: Vec<SubscriptionEvent>,
    pub messages: Vec<MessageRecord>,
    /// Messages of the WhatsApp Business app (imported history and echoes), newest first.
    pub app_messages: Vec<parley_store::coexistence::AppMessageRecord>,
}

/// What a segment selects now.
pub struct SegmentPreview {
    pub count: u64,
    pub sample: Vec<AudienceContact>,
}

/// A personalization preview's outcome.
pub enum PreviewOutcome {
    Text(String),
    Template(RenderedTemplate),
    Skipped(SkipReason),
}

/// The contact a preview renders for: a stored one by phone, or one given inline.
pub enum PreviewContact {
    Phone(String),
    Inline {
        phone: Option<String>,
        name: Option<String>,
        tags: Tags,
    },
}

/// How an import reads its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImportFormat {
    /// Also an `.xlsx` upload: a file that begins like a zip archive is read as a workbook.
    #[default]
    Csv,
    Ndjson,
    /// The first sheet of a workbook, read as a CSV file with its first row the header.
    Xlsx,
}

impl ImportFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ImportFormat::Csv => "csv",
            ImportFormat::Ndjson => "ndjson",
            ImportFormat::Xlsx => "xlsx",
        }
    }
    pub fn parse(s: &str) -> Option<ImportFormat> {
        match s.to_ascii_lowercase().as_str() {
            "csv" => Some(ImportFormat::Csv),
            "ndjson" | "jsonl" => Some(ImportFormat::Ndjson),
            "xlsx" => Some(ImportFormat::Xlsx),
            _ => None,
        }
    }
}

/// The type a CSV column's cells are read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagType {
    String,
    Integer,
    Float,
    Boolean,
    Date,
    DateTime,
    /// Items separated by `;`.
    List,
}

impl TagType {
    pub fn as_str(self) -> &'static str {
        match self {
            TagType::String => "string",
            TagType::Integer => "integer",
            TagType::Float => "float",
            TagType::Boolean => "boolean",
            TagType::Date => "date",
            TagType::DateTime => "datetime",
            TagType::List => "list",
        }
    }

    pub fn parse(s: &str) -> Option<TagType> {
        Some(match s.to_ascii_lowercase().as_str() {
            "string" | "text" => TagType::String,
            "integer" | "int" => TagType::Integer,
            "float" | "price" | "number" => TagType::Float,
            "boolean" | "bool" => TagType::Boolean,
            "date" => TagType::Date,
            "datetime" | "date-time" => TagType::DateTime,
            "list" => TagType::List,
            _ => return None,
        })
    }

    /// Reads one cell; an empty cell is no value.
    pub fn read(self, cell: &str) -> Result<Option<TagValue>, String> {
        let cell = cell.trim();
        if cell.is_empty() {
            return Ok(None);
        }
        let bad = |what: &str| format!("`{}` is not {what}", excerpt(cell, 64));
        Ok(Some(match self {
            TagType::String => TagValue::String(cell.to_owned()),
            TagType::Integer => TagValue::Integer(cell.parse().map_err(|_| bad("an integer"))?),
            TagType::Float => {
                let f: f64 = cell.parse().map_err(|_| bad("a number"))?;
                if !f.is_finite() {
                    return Err(bad("a finite number"));
                }
                TagValue::Float(f)
            }
            TagType::Boolean => match cell.to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" => TagValue::Boolean(true),
                "false" | "no" | "0" => TagValue::Boolean(false),
                _ => return Err(bad("true/false")),
            },
            TagType::Date => {
                let fmt = time::macros::format_description!("[year]-[month]-[day]");
                TagValue::Date(
                    time::Date::parse(cell, &fmt).map_err(|_| bad("a date (YYYY-MM-DD)"))?,
                )
            }
            TagType::DateTime => TagValue::DateTime(
                time::OffsetDateTime::parse(cell, &time::format_description::well_known::Rfc3339)
                    .map_err(|_| bad("an RFC 3339 date-time"))?,
            ),
            TagType::List => TagValue::List(
                cell.split(';')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ),
        }))
    }
}

/// One column mapping of a CSV import: `column:tag:type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnMap {
    pub column: String,
    /// The tag name, or `phone`, `name`, `locale`, `timezone`, `subscription` for the built-in
    /// fields; empty to ignore the column.
    pub tag: String,
    pub kind: TagType,
}

impl ColumnMap {
    /// Parses `column:tag:type` (`column:tag` is a string tag; `column:` ignores the column).
    pub fn parse(s: &str) -> Result<ColumnMap, String> {
        let mut parts = s.rsplitn(3, ':').collect::<Vec<_>>();
        parts.reverse();
        let (column, tag, kind) = match parts.as_slice() {
            [c, t, k] if TagType::parse(k).is_some() => (*c, *t, TagType::parse(k)),
            [c, t, k] => {
                return Err(format!(
                    "`{s}`: unknown type `{k}` for column `{c}` (tag `{t}`); use string, integer, float, boolean, date, datetime or list"
                ));
            }
            [c, t] => (*c, *t, Some(TagType::String)),
            _ => return Err(format!("`{s}` is not `column:tag:type`")),
        };
        Ok(ColumnMap {
            column: column.trim().to_owned(),
            tag: tag.trim().to_owned(),
            kind: kind.unwrap_or(TagType::String),
        })
    }
}

/// How an import reads its rows.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    pub format: ImportFormat,
    /// CSV: columns not listed are string tags named like the column.
    pub columns: Vec<ColumnMap>,
    /// The file's text encoding (CSV, NDJSON); `None` detects it from the head of the file.
    pub encoding: Option<TextEncoding>,
    /// CSV's cell separator; `None` detects it from the header.
    pub separator: Option<Separator>,
    /// The country whose local spellings phone numbers may use (`0151 …` with `DE`); numbers
    /// with `+` or `00` are read as they are.
    pub country: Option<Region>,
    /// The sheet an `.xlsx` import read (the first), once known.
    pub sheet: Option<String>,
}

impl ImportOptions {
    /// The options as an import job keeps them, so that a resume reads the rest of the file
    /// the same way: `{"format": "csv", "map": ["column:tag:type", …], "encoding": …,
    /// "separator": …, "country": …, "sheet": …}` (once the import has begun, with what was
    /// detected).
    pub fn to_stored(&self) -> String {
        let map: Vec<String> = self
            .columns
            .iter()
            .map(|m| format!("{}:{}:{}", m.column, m.tag, m.kind.as_str()))
            .collect();
        serde_json::json!({
            "format": self.format.as_str(),
            "map": map,
            "encoding": self.encoding.map(TextEncoding::as_str),
            "separator": self.separator.map(Separator::as_str),
            "country": self.country.map(|c| c.as_str()),
            "sheet": self.sheet,
        })
        .to_string()
    }

    /// Reads what `to_stored` wrote; `None` when it does not read. Options stored before
    /// imports detected anything (no `encoding` key) read UTF-8 and commas, as those imports did.
    pub fn from_stored(text: &str) -> Option<ImportOptions> {
        let v: Value = serde_json::from_str(text).ok()?;
        let format = ImportFormat::parse(v["format"].as_str()?)?;
        let columns = v["map"]
            .as_array()?
            .iter()
            .map(|m| m.as_str().and_then(|m| ColumnMap::parse(m).ok()))
            .collect::<Option<Vec<_>>>()?;
        let legacy = v.get("encoding").is_none();
        let encoding = match &v["encoding"] {
            Value::Null if legacy => Some(TextEncoding::Utf8),
            Value::Null => None,
            e => Some(TextEncoding::parse(e.as_str()?)?),
        };
        let separator = match &v["separator"] {
            Value::Null if legacy => Some(Separator::Comma),
            Value::Null => None,
            e => Some(Separator::parse(e.as_str()?)?),
        };
        let country = match &v["country"] {
            Value::Null => None,
            c => Some(Region::parse(c.as_str()?).ok()?),
        };
        Some(ImportOptions {
            format,
            columns,
            encoding,
            separator,
            country,
            sheet: v["sheet"].as_str().map(str::to_owned),
        })
    }

    /// The separator rows are split on (comma until detected).
    fn sep(&self) -> u8 {
        self.separator.unwrap_or(Separator::Comma).byte()
    }
}

/// Checks a tag name: 1–64 characters, not a built-in field.
pub fn check_tag_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("a tag name is empty".into());
    }
    if name.chars().count() > MAX_TAG_NAME {
        return Err(format!(
            "tag name `{}` is longer than {MAX_TAG_NAME} characters",
            excerpt(name, 64)
        ));
    }
    Ok(())
}

/// Checks a tag value's size: text (and each list item) at most [`MAX_TAG_VALUE_CHARS`]
/// characters, lists at most [`MAX_TAG_LIST_ITEMS`] items.
pub fn check_tag_value(name: &str, value: &TagValue) -> Result<(), String> {
    let long = |s: &str| s.chars().nth(MAX_TAG_VALUE_CHARS).is_some();
    match value {
        TagValue::String(s) if long(s) => Err(format!(
            "tag `{}` is longer than {MAX_TAG_VALUE_CHARS} characters: keep tag values short (a template parameter takes at most {MAX_TAG_VALUE_CHARS})",
            excerpt(name, 64)
        )),
        TagValue::List(items) if items.len() > MAX_TAG_LIST_ITEMS => Err(format!(
            "tag `{}` lists {} items: a list tag holds at most {MAX_TAG_LIST_ITEMS}",
            excerpt(name, 64),
            items.len()
        )),
        TagValue::List(items) if items.iter().any(|i| long(i)) => Err(format!(
            "an item of tag `{}` is longer than {MAX_TAG_VALUE_CHARS} characters",
            excerpt(name, 64)
        )),
        _ => Ok(()),
    }
}

/// Reads the API's tag object: values typed by their JSON type, `null` removes; names that
/// differ only in ASCII case are refused.
pub fn tag_patch(tags: &serde_json::Map<String, Value>) -> Result<TagPatch, EngineError> {
    let mut patch = TagPatch::new();
    for (name, v) in tags {
        let field = format!("tags.{name}");
        check_tag_name(name)
            .map_err(|m| EngineError::bad_request("invalid_tag", m).field(field.clone()))?;
        if let Some(other) = patch.keys().find(|k| k.eq_ignore_ascii_case(name)) {
            return Err(EngineError::bad_request(
                "duplicate_tag",
                format!("tags `{other}` and `{name}` differ only in case; tag names ignore case, so give one"),
            )
            .field(field));
        }
        let value = if v.is_null() {
            None
        } else {
            let tv: TagValue = serde_json::from_value(v.clone()).map_err(|e| {
                EngineError::bad_request("invalid_tag_value", format!("tag `{name}`: {e}"))
                    .field(field.clone())
            })?;
            check_tag_value(name, &tv).map_err(|m| {
                EngineError::unprocessable("tag_value_too_long", m).field(field.clone())
            })?;
            if matches!(tv, TagValue::Float(f) if !f.is_finite()) {
                return Err(EngineError::bad_request(
                    "invalid_tag_value",
                    format!("tag `{name}` is not a finite number"),
                )
                .field(field));
            }
            Some(tv)
        };
        patch.insert(name.clone(), value);
    }
    Ok(patch)
}

/// A filter over the nesting or condition limit: 422 `filter_too_complex`. `None` for a
/// filter that does not parse.
pub fn too_complex(e: &parley_domain::SegmentError, field: &str) -> Option<EngineError> {
    e.too_complex.then(|| {
        EngineError::unprocessable(
            "filter_too_complex",
            format!("the filter is too complex to run {e}"),
        )
        .field(field)
    })
}

fn parse_phone(phone: &str, field: &str) -> Result<E164, EngineError> {
    E164::parse(phone)
        .map_err(|e| EngineError::bad_request("invalid_phone_number", e.to_string()).field(field))
}

fn subscription_of(s: &str) -> Option<Subscription> {
    match s.trim().to_ascii_lowercase().as_str() {
        "opted_in" | "in" | "subscribed" | "yes" | "true" => Some(Subscription::OptedIn),
        "opted_out" | "out" | "unsubscribed" | "no" | "false" => Some(Subscription::OptedOut),
        _ => None,
    }
}

/// 422 `too_many_tags`: the write would take a contact past `MAX_CONTACT_TAGS` or
/// `MAX_CONTACT_TAG_BYTES`.
fn too_many_tags() -> EngineError {
    EngineError::unprocessable(
        "too_many_tags",
        format!(
            "a contact holds at most {MAX_CONTACT_TAGS} tags and {} KiB of them; with these the contact would hold more: remove tags it no longer needs (set them to null) first",
            MAX_CONTACT_TAG_BYTES / 1024
        ),
    )
    .field("tags")
}

impl Engine {
    /// Parses a filter; errors carry the character position.
    pub fn parse_segment(&self, filter: &str) -> Result<Segment, EngineError> {
        Segment::parse(filter).map_err(|e| {
            too_complex(&e, "filter").unwrap_or_else(|| {
                EngineError::bad_request(
                    "invalid_segment",
                    format!("the filter does not parse {e}"),
                )
                .field("filter")
            })
        })
    }

    pub async fn upsert_contact(
        &self,
        app: &ApplicationId,
        phone: &str,
        input: ContactInput,
    ) -> Result<(AudienceContact, bool), EngineError> {
        let tags = tag_patch(&input.tags)?;
        // The patch alone past the caps is refused before a new contact is made for it (the
        // merge with the stored tags is checked where it is written).
        let given: parley_domain::Tags = tags
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.clone()?)))
            .collect();
        if tags_grow_past_cap(&parley_domain::Tags::new(), &given) {
            return Err(too_many_tags());
        }
        let (address, made) = self.contact_address_or_new(app, phone).await?;
        let subscription = match input.subscription.as_deref() {
            None => None,
            Some(s) => Some(SubscriptionChange {
                state: subscription_of(s).ok_or_else(|| {
                    EngineError::bad_request(
                        "invalid_subscription",
                        format!("subscription `{s}` is not `opted_in` or `opted_out`"),
                    )
                    .field("subscription")
                })?,
                source: input.source.to_owned(),
                note: None,
            }),
        };
        let counts = self
            .store
            .upsert_audience(
                app,
                &[ContactUpsert {
                    phone: address.clone(),
                    name: input.name.filter(|n| !n.trim().is_empty()),
                    wa_id: E164::from_stored(&address).ok().map(|p| p.wa_id()),
                    locale: input.locale,
                    timezone: input.timezone,
                    tags,
                    subscription,
                    bsuid: None,
                }],
                self.now(),
            )
            .await?;
        if counts.refused > 0 {
            return Err(too_many_tags());
        }
        crate::events::contact_updated(self, app, &address, input.source, &input.tags).await?;
        if input.subscription.as_deref() == Some("opted_out") {
            crate::events::contact_opted_out(self, app, &address, input.source, None).await?;
        }
        let mut address = address;
        if let Some(bsuid) = input.bsuid.as_deref().filter(|b| !b.trim().is_empty()) {
            let bsuid = Bsuid::parse(bsuid).map_err(|e| {
                EngineError::bad_request("invalid_bsuid", e.to_string()).field("bsuid")
            })?;
            let ident = ContactIdentity {
                phone: E164::from_stored(&address)
                    .ok()
                    .map(|p| p.as_str().to_owned()),
                bsuid: Some(bsuid.as_str().to_owned()),
                ..ContactIdentity::default()
            };
            self.store
                .resolve_contact(app, &ident, false, self.now())
                .await?;
            if let Some(c) = self.store.contact_by_bsuid(app, bsuid.as_str()).await? {
                address = c.phone;
            }
        }
        let contact = self
            .store
            .audience_contact(app, &address)
            .await?
            .ok_or_else(|| EngineError::internal("contact vanished after upsert"))?;
        Ok((contact, made || counts.created == 1))
    }

    pub async fn contact_detail(
        &self,
        app: &ApplicationId,
        phone: &str,
    ) -> Result<ContactDetail, EngineError> {
        let address = self.contact_address(app, phone).await?;
        let contact = self
            .store
            .audience_contact(app, &address)
            .await?
            .ok_or_else(|| contact_not_found(&address))?;
        let history = self.store.subscription_history(&contact.contact.id).await?;
        let messages = self.store.messages_to(app, &address, 20).await?;
        let app_messages = self.store.contact_app_messages(app, &address, 50).await?;
        Ok(ContactDetail {
            contact,
            history,
            messages,
            app_messages,
        })
    }

    /// A page of contacts matching `filter` (default `all`), and the cursor of the next page.
    pub async fn list_contacts(
        &self,
        app: &ApplicationId,
        filter: Option<&str>,
        search: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<(Vec<AudienceContact>, Option<String>), EngineError> {
        let filter = filter.map(str::trim).filter(|f| !f.is_empty());
        let filtered = filter.is_some();
        let segment = match filter {
            Some(f) => self.parse_segment(f)?,
            None => Segment::all(),
        };
        let search = search.map(str::trim).filter(|s| !s.is_empty());
        if search.is_some_and(|s| s.chars().count() > MAX_SEARCH_CHARS) {
            return Err(EngineError::bad_request(
                "invalid_search",
                format!("search for at most {MAX_SEARCH_CHARS} characters of a number or name"),
            )
            .field("search"));
        }
        let limit = limit.clamp(1, 500);
        let query = ContactQuery {
            segment: &segment,
            search,
            after,
            limit: limit + 1,
            now: to_datetime(self.now()),
        };
        // A filter or a search runs bounded, on the filter connections (a search matching
        // nothing reads every contact); a plain list, a walk of the phone index, does not
        // need to.
        let mut page = if filtered || search.is_some() {
            match self
                .store
                .list_audience_bounded(app, &query, self.config.filter_timeout)
                .await
            {
                Err(parley_store::StoreError::TooExpensive) if !filtered => {
                    return Err(EngineError::unprocessable(
                        "search_too_expensive",
                        "the search took too long over your contacts and was stopped: search for more of the number or the name",
                    )
                    .field("search"));
                }
                r => r?,
            }
        } else {
            self.store.list_audience(app, &query).await?
        };
        let next = if page.len() > limit as usize {
            page.truncate(limit as usize);
            page.last().map(|c| c.contact.phone.clone())
        } else {
            None
        };
        Ok((page, next))
    }

    pub async fn erase_contact(
        &self,
        app: &ApplicationId,
        phone: &str,
    ) -> Result<EraseReport, EngineError> {
        // The phone, or any BSUID of the contact: the store finds it by either and erases
        // the row with every identity on it.
        let key = if is_bsuid_address(phone) {
            Bsuid::parse(phone)
                .map_err(|e| {
                    EngineError::bad_request("invalid_bsuid", e.to_string()).field("phone")
                })?
                .as_str()
                .to_owned()
        } else {
            parse_phone(phone, "phone")?.as_str().to_owned()
        };
        let report = self.store.erase_contact(app, &key).await?;
        if report == EraseReport::default() {
            return Err(contact_not_found(&key));
        }
        Ok(report)
    }

    /// The stored address of the contact `key` names: a phone (E.164) as given, or the
    /// address of the contact with that business-scoped user id (BSUID, or parent BSUID).
    pub(crate) async fn contact_address(
        &self,
        app: &ApplicationId,
        key: &str,
    ) -> Result<String, EngineError> {
        if !is_bsuid_address(key) {
            return Ok(parse_phone(key, "phone")?.as_str().to_owned());
        }
        let bsuid = Bsuid::parse(key)
            .map_err(|e| EngineError::bad_request("invalid_bsuid", e.to_string()).field("phone"))?;
        match self.store.contact_by_bsuid(app, bsuid.as_str()).await? {
            Some(c) => Ok(c.phone),
            None => Err(contact_not_found(bsuid.as_str())),
        }
    }

    /// `contact_address`, creating a contact known only by a new BSUID (true when created).
    async fn contact_address_or_new(
        &self,
        app: &ApplicationId,
        key: &str,
    ) -> Result<(String, bool), EngineError> {
        if !is_bsuid_address(key) {
            return Ok((parse_phone(key, "phone")?.as_str().to_owned(), false));
        }
        let bsuid = Bsuid::parse(key)
            .map_err(|e| EngineError::bad_request("invalid_bsuid", e.to_string()).field("phone"))?;
        if let Some(c) = self.store.contact_by_bsuid(app, bsuid.as_str()).await? {
            return Ok((c.phone, false));
        }
        if bsuid.is_parent() {
            return Err(EngineError::bad_request(
                "invalid_bsuid",
                "a parent BSUID cannot create a contact: give the contact's own BSUID",
            )
            .field("phone"));
        }
        let ident = ContactIdentity {
            bsuid: Some(bsuid.as_str().to_owned()),
            ..ContactIdentity::default()
        };
        self.store
            .resolve_contact(app, &ident, true, self.now())
            .await?;
        Ok((bsuid.as_str().to_owned(), true))
    }

    pub async fn preview_segment(
        &self,
        app: &ApplicationId,
        segment: &Segment,
        sample: u32,
    ) -> Result<SegmentPreview, EngineError> {
        let now = to_datetime(self.now());
        let budget = self.config.filter_timeout;
        let count = self
            .store
            .count_segment_bounded(app, segment, now, budget)
            .await?;
        let sample = if sample == 0 {
            Vec::new()
        } else {
            self.store
                .list_audience_bounded(
                    app,
                    &ContactQuery {
                        segment,
                        search: None,
                        after: None,
                        limit: sample,
                        now,
                    },
                    budget,
                )
                .await?
        };
        Ok(SegmentPreview { count, sample })
    }

    pub async fn create_segment(
        &self,
        app: &ApplicationId,
        name: &str,
        filter: &str,
    ) -> Result<SegmentRecord, EngineError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(EngineError::bad_request(
                "invalid_segment_name",
                "give the segment a name of 1 to 100 characters",
            )
            .field("name"));
        }
        let segment = self.parse_segment(filter)?;
        if self.store.segment_by_name(app, name).await?.is_some() {
            return Err(EngineError::new(
                ErrorKind::Conflict,
                "segment_exists",
                format!("a segment named `{name}` exists already; pick another name"),
            )
            .field("name"));
        }
        let now = self.now();
        let record = SegmentRecord {
            id: SegmentId::new(),
            application_id: app.clone(),
            name: name.to_owned(),
            filter: segment.source().to_owned(),
            created_at: now,
            updated_at: now,
        };
        if !self.store.create_segment(&record, MAX_SEGMENTS).await? {
            return Err(EngineError::new(
                ErrorKind::Conflict,
                "segment_limit_reached",
                format!(
                    "an application keeps at most {MAX_SEGMENTS} segments; delete one you no longer use (DELETE /api/v1/segments/{{id}})"
                ),
            ));
        }
        Ok(record)
    }

    /// Deletes the application's segment `id` (404 `segment_not_found` when it has none by
    /// that id: another application's is not found either). Campaigns that chose it keep the
    /// filter they copied at their creation.
    pub async fn delete_segment(
        &self,
        app: &ApplicationId,
        id: &SegmentId,
    ) -> Result<(), EngineError> {
        if self.store.delete_segment(app, id).await? {
            Ok(())
        } else {
            Err(segment_not_found(id.as_str()))
        }
    }

    pub async fn segment_by_id(
        &self,
        app: &ApplicationId,
        id: &SegmentId,
    ) -> Result<SegmentRecord, EngineError> {
        self.store
            .segment(app, id)
            .await?
            .ok_or_else(|| segment_not_found(id.as_str()))
    }

    /// Renders free text or a template's variables for one contact.
    pub async fn personalize_preview(
        &self,
        app: &ApplicationId,
        contact: PreviewContact,
        text: Option<&str>,
        template: Option<(&str, &str, &VariableInput)>,
    ) -> Result<PreviewOutcome, EngineError> {
        let (phone, name, tags) = match contact {
            PreviewContact::Phone(p) => {
                let phone = parse_phone(&p, "contact")?;
                let c = self
                    .store
                    .audience_contact(app, phone.as_str())
                    .await?
                    .ok_or_else(|| contact_not_found(phone.as_str()))?;
                (phone.as_str().to_owned(), c.contact.name, c.contact.tags)
            }
            PreviewContact::Inline { phone, name, tags } => {
                let phone = match phone {
                    Some(p) => parse_phone(&p, "contact.phone")?.as_str().to_owned(),
                    None => String::new(),
                };
                (phone, name, tags)
            }
        };
        let lookup = ContactTags {
            tags: Some(&tags),
            phone: &phone,
            name: name.as_deref(),
        };
        match (text, template) {
            (Some(text), None) => {
                let dynamic = DynamicText::parse(text).map_err(|e| {
                    EngineError::bad_request("expression_invalid", e.to_string()).field("text")
                })?;
                Ok(
                    match dynamic.render(&lookup, &crate::messages::text_limit()) {
                        Ok(s) => PreviewOutcome::Text(s),
                        Err(reason) => match crate::messages::too_long(&reason, "") {
                            Some(e) => return Err(e),
                            None => PreviewOutcome::Skipped(reason),
                        },
                    },
                )
            }
            (None, Some((name, language, variables))) => {
                let record = self
                    .store
                    .template(app, name, language)
                    .await?
                    .ok_or_else(|| {
                        EngineError::unprocessable(
                            "template_not_found",
                            format!("there is no template `{name}` in language `{language}`"),
                        )
                        .field("template.name")
                    })?;
                let bound = BoundTemplate::bind(&record.template, variables).map_err(|e| {
                    EngineError::unprocessable(e.code(), e.to_string())
                        .field(format!("variables.{}", e.field()))
                })?;
                Ok(match bound.render(&lookup) {
                    Ok(r) => PreviewOutcome::Template(r),
                    Err(reason) => match crate::messages::too_long(&reason, "variables") {
                        Some(e) => return Err(e),
                        None => PreviewOutcome::Skipped(reason),
                    },
                })
            }
            _ => Err(EngineError::bad_request(
                "preview_input",
                "give either `text`, or `template` with `variables`",
            )),
        }
    }

    // --- imports ------------------------------------------------------------------------------

    /// Creates the job row and starts reading `body` in the background.
    pub async fn start_import<S, B, E>(
        &self,
        app: &ApplicationId,
        options: ImportOptions,
        body: S,
    ) -> Result<ImportId, EngineError>
    where
        S: Stream<Item = Result<B, E>> + Send + Unpin + 'static,
        B: AsRef<[u8]> + Send,
        E: Display,
    {
        let job = self.create_import(app, &options).await?;
        let id = job.id.clone();
        let engine = self.clone();
        tokio::spawn(async move {
            if let Err(e) = engine.run_import(job, &options, body, |_| {}).await {
                tracing::error!(error = %e, "import failed");
            }
        });
        Ok(id)
    }

    pub async fn create_import(
        &self,
        app: &ApplicationId,
        options: &ImportOptions,
    ) -> Result<ImportJobRecord, EngineError> {
        let now = self.now();
        let job = ImportJobRecord {
            id: ImportId::new(),
            application_id: app.clone(),
            format: options.format.as_str().to_owned(),
            state: ImportState::Running,
            rows_read: 0,
            created: 0,
            updated: 0,
            rejected: 0,
            error: None,
            created_at: now,
            updated_at: now,
            finished_at: None,
            options: Some(options.to_stored()),
            committed_bytes: 0,
            committed_sha256: None,
        };
        self.store.create_import_job(&job).await?;
        Ok(job)
    }

    /// Takes an `interrupted` (or `failed`) import back to `running` for a resume with the
    /// same file, and the options it was started with. 404 for no such import, 409 when it
    /// is running or done.
    pub async fn resume_import(
        &self,
        app: &ApplicationId,
        id: &ImportId,
    ) -> Result<(ImportJobRecord, ImportOptions), EngineError> {
        let Some(job) = self.store.resume_import_job(app, id, self.now()).await? else {
            let job = self.import_job(app, id).await?;
            return Err(EngineError::new(
                ErrorKind::Conflict,
                "import_not_resumable",
                format!(
                    "import {id} is {}; only an interrupted (or failed) import can be resumed",
                    job.state.as_str()
                ),
            ));
        };
        let format = ImportFormat::parse(&job.format).unwrap_or(ImportFormat::Csv);
        let options = job
            .options
            .as_deref()
            .and_then(ImportOptions::from_stored)
            .unwrap_or(ImportOptions {
                format,
                encoding: Some(TextEncoding::Utf8),
                separator: Some(Separator::Comma),
                ..ImportOptions::default()
            });
        Ok((job, options))
    }

    /// Imports left `running` by a Parley that is gone (last written before `started`)
    /// become `interrupted`, with the rows committed so far; they can be resumed.
    pub async fn interrupt_stale_imports(&self, started: i64) {
        match self
            .store
            .interrupt_stale_imports(started, self.now())
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                count = n,
                "imports left running by a Parley that stopped are marked interrupted; resume them with the same file"
            ),
            Err(e) => tracing::warn!(error = %e, "could not mark interrupted imports"),
        }
    }

    /// Reads every row of `body` into the job; `progress` sees the job after each chunk.
    /// Bad rows are recorded and skipped. Each chunk commits with the job's progress in one
    /// transaction, so the job always says which rows the database holds. An upload that
    /// breaks off leaves the job `interrupted`; a storage failure ends it `failed`, and so does
    /// a workbook that does not read (with its error).
    ///
    /// First the head of the file ([`DETECT_BYTES`]) is read: a zip archive is a workbook
    /// (read whole, at most [`MAX_XLSX_BYTES`], and its first sheet turned into CSV text);
    /// otherwise the encoding and the separator the options leave open are detected there.
    /// What was detected is kept in the job's options, so a resume reads the same way.
    ///
    /// A resumed job (`committed_bytes` > 0) reads the file from its start again: the text up
    /// to the last committed row is read but not written, and must be the same text (its
    /// SHA-256 is kept), else the resume is refused (409 `import_file_differs`). The text is
    /// the file's own bytes for UTF-8, the decoded text (as UTF-8) for other encodings, and
    /// the first sheet's CSV text for a workbook: a workbook saved again with the same rows
    /// resumes too.
    pub async fn run_import<S, B, E>(
        &self,
        mut job: ImportJobRecord,
        options: &ImportOptions,
        mut body: S,
        progress: impl FnMut(&ImportJobRecord) + Send,
    ) -> Result<ImportJobRecord, EngineError>
    where
        S: Stream<Item = Result<B, E>> + Send + Unpin,
        B: AsRef<[u8]> + Send,
        E: Display,
    {
        let mut options = options.clone();
        let mut head = Vec::new();
        let mut failure = None;
        let mut ended = false;
        while head.len() < DETECT_BYTES {
            match body.next().await {
                Some(Ok(bytes)) => head.extend_from_slice(bytes.as_ref()),
                Some(Err(e)) => {
                    failure = Some(format!("the upload broke off: {e}"));
                    break;
                }
                None => {
                    ended = true;
                    break;
                }
            }
        }
        let workbook = options.format == ImportFormat::Xlsx
            || (options.format == ImportFormat::Csv && is_zip(&head));
        if workbook {
            while failure.is_none() && !ended && head.len() <= MAX_XLSX_BYTES {
                match body.next().await {
                    Some(Ok(bytes)) => head.extend_from_slice(bytes.as_ref()),
                    Some(Err(e)) => failure = Some(format!("the upload broke off: {e}")),
                    None => ended = true,
                }
            }
            if head.len() > MAX_XLSX_BYTES {
                return Err(self.fail_import(job, xlsx_upload_too_large()).await);
            }
            options.format = ImportFormat::Xlsx;
            options.encoding = Some(TextEncoding::Utf8);
            options.separator = Some(Separator::Comma);
            if let Some(f) = failure {
                // Nothing of a workbook is read before all of it is here.
                let chunks = futures::stream::iter([Err::<Vec<u8>, String>(f)]);
                return self.read_rows(job, &options, chunks, progress).await;
            }
            let sheet = tokio::task::spawn_blocking(move || read_xlsx(&head))
                .await
                .map_err(EngineError::internal)?;
            let sheet = match sheet {
                Ok(sheet) => sheet,
                Err(e) => return Err(self.fail_import(job, e).await),
            };
            options.sheet = Some(sheet.name);
            self.keep_import_options(&mut job, &options).await?;
            // The sheet's text in 64 KiB chunks, copied one at a time (not all at once).
            const CHUNK: usize = 64 * 1024;
            let text = sheet.text.into_bytes();
            let len = text.len();
            let chunks = futures::stream::iter(
                (0..len)
                    .step_by(CHUNK)
                    .map(move |at| Ok::<Vec<u8>, String>(text[at..len.min(at + CHUNK)].to_vec())),
            );
            return self.read_rows(job, &options, chunks, progress).await;
        }
        resolve_text_options(&mut options, &head, ended);
        self.keep_import_options(&mut job, &options).await?;
        let first = futures::stream::iter(
            std::iter::once(Ok::<Vec<u8>, String>(head)).chain(failure.map(Err)),
        );
        let rest = futures::stream::iter((!ended).then_some(body))
            .flatten()
            .map(|r| {
                r.map(|b| b.as_ref().to_vec())
                    .map_err(|e| format!("the upload broke off: {e}"))
            });
        self.read_rows(job, &options, first.chain(rest), progress)
            .await
    }

    /// Keeps the options the import reads with (once detected) on the job.
    async fn keep_import_options(
        &self,
        job: &mut ImportJobRecord,
        options: &ImportOptions,
    ) -> Result<(), EngineError> {
        let stored = options.to_stored();
        if job.options.as_deref() != Some(stored.as_str()) || job.format != options.format.as_str()
        {
            job.options = Some(stored);
            job.format = options.format.as_str().to_owned();
            job.updated_at = self.now();
            self.store.update_import_job(job).await?;
        }
        Ok(())
    }

    /// Ends an import `failed` with `error`'s message, and gives the error back.
    async fn fail_import(&self, mut job: ImportJobRecord, error: EngineError) -> EngineError {
        let now = self.now();
        job.state = ImportState::Failed;
        job.error = Some(error.message.clone());
        job.updated_at = now;
        job.finished_at = Some(now);
        if let Err(e) = self.store.update_import_job(&job).await {
            return e.into();
        }
        error
    }

    /// Reads the file's chunks (decoded with the options' encoding) into the job's rows.
    async fn read_rows<S>(
        &self,
        mut job: ImportJobRecord,
        options: &ImportOptions,
        mut chunks: S,
        mut progress: impl FnMut(&ImportJobRecord) + Send,
    ) -> Result<ImportJobRecord, EngineError>
    where
        S: Stream<Item = Result<Vec<u8>, String>> + Send + Unpin,
    {
        let mut decoder = TextDecoder::new(options.encoding.unwrap_or(TextEncoding::Utf8));
        let mut reader = RowReader::new(options.clone());
        let mut batch = Batch::default();
        let mut failure = None;
        // Bytes still to replay (committed before), and what they must hash to.
        let mut replay = job.committed_bytes;
        let mut replay_check = (replay > 0).then(|| job.committed_sha256.clone());
        loop {
            let (raw, last) = match chunks.next().await {
                Some(Ok(bytes)) => (bytes, false),
                Some(Err(e)) => {
                    failure = Some(e);
                    break;
                }
                None => (Vec::new(), true),
            };
            let text = decoder.decode(&raw, last);
            let mut bytes = &text[..];
            if replay > 0 {
                let n = bytes
                    .len()
                    .min(usize::try_from(replay).unwrap_or(usize::MAX));
                let mut discard = Batch::default();
                reader.feed(&bytes[..n], &mut discard);
                replay -= n as u64;
                bytes = &bytes[n..];
            }
            if replay == 0
                && let Some(expected) = replay_check.take()
                && Some(reader.committed()) != expected.map(|h| (job.committed_bytes, h))
            {
                return Err(self.refuse_other_file(job).await);
            }
            reader.feed(bytes, &mut batch);
            if batch.rows.len() >= IMPORT_CHUNK {
                self.flush_import(&mut job, &mut batch, &reader, &mut progress)
                    .await?;
            }
            if last {
                break;
            }
        }
        if failure.is_none() && replay_check.is_some() {
            // The upload ended before the bytes already imported: not the same file.
            return Err(self.refuse_other_file(job).await);
        }
        if failure.is_none() {
            reader.finish(&mut batch);
        }
        self.flush_import(&mut job, &mut batch, &reader, &mut progress)
            .await?;
        let now = self.now();
        job.state = if failure.is_some() {
            ImportState::Interrupted
        } else {
            ImportState::Done
        };
        job.error = failure.map(|f| {
            format!(
                "{f}; the rows committed so far are kept. Resume the import with the same file."
            )
        });
        job.updated_at = now;
        job.finished_at = (job.state == ImportState::Done).then_some(now);
        self.store.update_import_job(&job).await?;
        progress(&job);
        Ok(job)
    }

    /// A resume whose upload does not begin with the bytes the import already read: the job
    /// goes back to `interrupted`, unchanged.
    async fn refuse_other_file(&self, mut job: ImportJobRecord) -> EngineError {
        job.state = ImportState::Interrupted;
        job.updated_at = self.now();
        if let Err(e) = self.store.update_import_job(&job).await {
            return e.into();
        }
        EngineError::new(
            ErrorKind::Conflict,
            "import_file_differs",
            format!(
                "this upload does not begin with the {} bytes import {} already read; resume it with the same file",
                job.committed_bytes, job.id
            ),
        )
    }

    async fn flush_import(
        &self,
        job: &mut ImportJobRecord,
        batch: &mut Batch,
        reader: &RowReader,
        progress: &mut (impl FnMut(&ImportJobRecord) + Send),
    ) -> Result<(), EngineError> {
        if batch.rows.is_empty() && batch.rejects.is_empty() && batch.read == 0 {
            return Ok(());
        }
        job.rows_read += batch.read;
        job.rejected += batch.rejects.len() as u64;
        let (bytes, sha) = reader.committed();
        job.committed_bytes = bytes;
        job.committed_sha256 = Some(sha);
        let now = self.now();
        let counts = self
            .store
            .commit_import_chunk(job, &batch.rows, &batch.lines, &batch.rejects, now)
            .await?;
        job.rejected += counts.refused;
        job.created += counts.created;
        job.updated += counts.updated;
        job.updated_at = now;
        batch.rows.clear();
        batch.lines.clear();
        batch.rejects.clear();
        batch.read = 0;
        progress(job);
        Ok(())
    }

    /// The application's imports, newest first (`limit` + 1 read to tell a next page).
    pub async fn import_jobs(
        &self,
        app: &ApplicationId,
        before: Option<&ImportId>,
        limit: u32,
    ) -> Result<Vec<ImportJobRecord>, EngineError> {
        Ok(self.store.import_jobs(app, before, limit).await?)
    }

    pub async fn import_job(
        &self,
        app: &ApplicationId,
        id: &ImportId,
    ) -> Result<ImportJobRecord, EngineError> {
        self.store
            .import_job(app, id)
            .await?
            .ok_or_else(|| import_not_found(id.as_str()))
    }
}

/// A segment id from a URL or a form, parsed at the edge: text that is not a segment id is
/// answered like an id no segment has.
pub fn segment_id(raw: &str) -> Result<SegmentId, EngineError> {
    SegmentId::parse(raw).map_err(|_| segment_not_found(raw))
}

fn segment_not_found(id: &str) -> EngineError {
    EngineError::new(
        ErrorKind::NotFound,
        "segment_not_found",
        format!("there is no segment `{id}`; list them with GET /api/v1/segments"),
    )
}

/// An import id from a URL, parsed at the edge: text that is not an import id is answered
/// like an id no import has.
pub fn import_id(raw: &str) -> Result<ImportId, EngineError> {
    ImportId::parse(raw).map_err(|_| import_not_found(raw))
}

fn import_not_found(id: &str) -> EngineError {
    EngineError::new(
        ErrorKind::NotFound,
        "import_not_found",
        format!("there is no import `{id}` in this application"),
    )
}

/// One row of an import preview: what the row would write, or why it would be rejected.
pub struct ImportPreviewRow {
    /// 1-based line the row starts on.
    pub line: u64,
    pub outcome: Result<ContactUpsert, String>,
}

/// What the first rows of an upload would import, for the console's mapping step.
pub struct ImportPreview {
    /// The options the import would read with: what was given, and what was detected
    /// (format, encoding, separator, sheet).
    pub read_as: ImportOptions,
    /// The CSV header's column names (empty for NDJSON).
    pub columns: Vec<String>,
    pub rows: Vec<ImportPreviewRow>,
}

/// The encoding and separator the options leave open, detected from the head of the file
/// (`complete` when it is the whole file).
/// Only the first [`DETECT_BYTES`] count, so that a preview of a longer head and the import
/// of the whole file agree.
fn resolve_text_options(options: &mut ImportOptions, head: &[u8], complete: bool) {
    let n = head.len().min(DETECT_BYTES);
    let (head, complete) = (&head[..n], complete && n == head.len());
    let encoding = *options
        .encoding
        .get_or_insert_with(|| detect_encoding(head, complete));
    if options.format == ImportFormat::Csv && options.separator.is_none() {
        let text = decode_all(head, encoding, complete);
        options.separator = Some(detect_separator(&String::from_utf8_lossy(&text)));
    }
}

/// Reads the head of an upload with the import's own row reader, without writing anything.
/// `complete` says whether `head` is the whole file (else its last, cut row is left out). A
/// workbook (`xlsx`, or a zip archive given as CSV) must be complete; one that does not read
/// is the error an import of it would end with.
pub fn preview_import(
    options: &ImportOptions,
    head: &[u8],
    complete: bool,
    max_rows: usize,
) -> Result<ImportPreview, EngineError> {
    let mut options = options.clone();
    let sheet;
    let text: Cow<[u8]> = if options.format == ImportFormat::Xlsx
        || (options.format == ImportFormat::Csv && is_zip(head))
    {
        if !complete {
            return Err(EngineError::unprocessable(
                "xlsx_incomplete",
                "an .xlsx workbook is read whole: send all of the file to preview it",
            ));
        }
        if head.len() > MAX_XLSX_BYTES {
            return Err(xlsx_upload_too_large());
        }
        sheet = read_xlsx(head)?;
        options.format = ImportFormat::Xlsx;
        options.encoding = Some(TextEncoding::Utf8);
        options.separator = Some(Separator::Comma);
        options.sheet = Some(sheet.name.clone());
        Cow::Borrowed(sheet.text.as_bytes())
    } else {
        resolve_text_options(&mut options, head, complete);
        Cow::Owned(decode_all(
            head,
            options.encoding.unwrap_or(TextEncoding::Utf8),
            complete,
        ))
    };
    let mut reader = RowReader::new(options.clone());
    let mut batch = Batch::default();
    reader.feed(&text, &mut batch);
    if complete {
        reader.finish(&mut batch);
    }
    let columns = reader
        .header
        .as_ref()
        .map(|h| h.iter().map(|(name, _)| name.clone()).collect())
        .unwrap_or_default();
    let mut rows: Vec<ImportPreviewRow> = batch
        .rows
        .into_iter()
        .zip(batch.lines)
        .map(|(row, line)| ImportPreviewRow {
            line,
            outcome: Ok(row),
        })
        .chain(batch.rejects.into_iter().map(|r| ImportPreviewRow {
            line: r.line,
            outcome: Err(r.reason),
        }))
        .collect();
    rows.sort_by_key(|r| r.line);
    rows.truncate(max_rows);
    Ok(ImportPreview {
        read_as: options,
        columns,
        rows,
    })
}

impl Engine {
    /// Every rejected row of an import as CSV `line,reason,row`.
    pub async fn import_rejects_csv(
        &self,
        app: &ApplicationId,
        job: &ImportJobRecord,
    ) -> Result<String, EngineError> {
        let mut out = String::from("line,reason,row\n");
        let mut after = 0;
        loop {
            let page = self
                .store
                .import_rejects(app, &job.id, after, 1_000)
                .await?;
            let Some(last) = page.last() else { break };
            after = last.line;
            for r in &page {
                out.push_str(&format!(
                    "{},{},{}\n",
                    r.line,
                    csv_cell(&r.reason),
                    csv_cell(&r.raw)
                ));
            }
        }
        Ok(out)
    }
}

/// A CSV cell, quoted when it needs to be.
pub fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

pub(crate) fn contact_not_found(key: &str) -> EngineError {
    EngineError::new(
        ErrorKind::NotFound,
        "contact_not_found",
        format!("there is no contact {key} in this application"),
    )
}

#[derive(Default)]
struct Batch {
    rows: Vec<ContactUpsert>,
    /// The line of each row in `rows` (kept only for previews).
    lines: Vec<u64>,
    rejects: Vec<RejectedRow>,
    read: u64,
}

/// Where a CSV byte stands with respect to quoting, read as [`split_csv`] reads cells: a `"`
/// opens a quoted cell only at the start of a cell (elsewhere it is an ordinary character, as
/// in `5" screen`); inside one, `""` is a quote and a lone `"` closes it. A newline ends the
/// record unless it is inside a quoted cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CsvQuote {
    CellStart,
    Unquoted,
    Quoted,
    /// A `"` inside a quoted cell: the closing one, or the first of `""`.
    AfterQuote,
}

impl CsvQuote {
    /// The state after byte `b`, cells separated by `sep`.
    fn next(self, b: u8, sep: u8) -> CsvQuote {
        match (self, b) {
            (CsvQuote::CellStart, b'"') => CsvQuote::Quoted,
            (CsvQuote::Quoted, b'"') => CsvQuote::AfterQuote,
            (CsvQuote::AfterQuote, b'"') => CsvQuote::Quoted,
            (CsvQuote::Quoted, _) => CsvQuote::Quoted,
            (_, b'\n') => CsvQuote::CellStart,
            (_, b) if b == sep => CsvQuote::CellStart,
            _ => CsvQuote::Unquoted,
        }
    }
}

/// Splits the upload into rows and turns each into an upsert or a rejection.
struct RowReader {
    options: ImportOptions,
    /// Bytes of the current, unfinished line (NDJSON) or record (CSV).
    pending: Vec<u8>,
    /// Physical line the pending record starts on (1-based).
    line: u64,
    /// Lines consumed so far.
    lines_seen: u64,
    quote: CsvQuote,
    header: Option<Vec<(String, Option<ColumnMap>)>>,
    skipping: bool,
    /// Bytes fed so far, and their SHA-256.
    fed: u64,
    hasher: Sha256,
    /// The end of the last complete record (every row before it is in the batch) and the
    /// SHA-256 of the bytes up to it: what a chunk commits, and what a resume checks.
    boundary: u64,
    boundary_hasher: Sha256,
}

impl RowReader {
    fn new(options: ImportOptions) -> RowReader {
        RowReader {
            options,
            pending: Vec::new(),
            line: 1,
            lines_seen: 0,
            quote: CsvQuote::CellStart,
            header: None,
            skipping: false,
            fed: 0,
            hasher: Sha256::new(),
            boundary: 0,
            boundary_hasher: Sha256::new(),
        }
    }

    /// Bytes up to the end of the last complete record, and their SHA-256 (hex).
    fn committed(&self) -> (u64, String) {
        (
            self.boundary,
            hex::encode(self.boundary_hasher.clone().finalize()),
        )
    }

    fn feed(&mut self, bytes: &[u8], batch: &mut Batch) {
        // Bytes since the last record end, not hashed yet.
        let mut unhashed = 0;
        for (i, &b) in bytes.iter().enumerate() {
            if self.options.format == ImportFormat::Csv {
                // The byte order mark (dropped from the first line later) starts no cell; the
                // start of one that does not go on was the cell's first content.
                const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];
                let n = self.pending.len();
                let in_bom = self.line == 1 && n < 3 && BOM[..n] == self.pending[..];
                if !(in_bom && BOM[n] == b) {
                    if in_bom && n > 0 {
                        self.quote = CsvQuote::Unquoted;
                    }
                    self.quote = self.quote.next(b, self.options.sep());
                }
            }
            if b == b'\n' {
                self.lines_seen += 1;
                if self.quote != CsvQuote::Quoted {
                    let record = std::mem::take(&mut self.pending);
                    let skipped = std::mem::replace(&mut self.skipping, false);
                    self.record(record, skipped, batch);
                    self.line = self.lines_seen + 1;
                    self.hasher.update(&bytes[unhashed..=i]);
                    unhashed = i + 1;
                    self.boundary = self.fed + unhashed as u64;
                    self.boundary_hasher = self.hasher.clone();
                    continue;
                }
            }
            if self.skipping {
                continue;
            }
            if self.pending.len() >= MAX_ROW_BYTES {
                self.skipping = true;
                continue;
            }
            self.pending.push(b);
        }
        self.hasher.update(&bytes[unhashed..]);
        self.fed += bytes.len() as u64;
    }

    fn finish(&mut self, batch: &mut Batch) {
        let record = std::mem::take(&mut self.pending);
        let skipped = std::mem::replace(&mut self.skipping, false);
        if !record.is_empty() || skipped {
            self.record(record, skipped, batch);
        }
        self.boundary = self.fed;
        self.boundary_hasher = self.hasher.clone();
    }

    fn record(&mut self, mut bytes: Vec<u8>, too_long: bool, batch: &mut Batch) {
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        if self.line == 1 && bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
            bytes.drain(..3);
        }
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if text.trim().is_empty() && !too_long {
            return;
        }
        let line = self.line;
        if self.options.format != ImportFormat::Ndjson && self.header.is_none() {
            let names = split_cells(&text, self.options.sep());
            self.header = Some(
                names
                    .into_iter()
                    .map(|n| {
                        let n = n.trim().to_owned();
                        let map = self.options.columns.iter().find(|m| m.column == n).cloned();
                        (n, map)
                    })
                    .collect(),
            );
            return;
        }
        batch.read += 1;
        let reject = |reason: String| RejectedRow {
            line,
            reason,
            raw: excerpt(&text, 2_000),
        };
        if too_long {
            batch.rejects.push(reject(format!(
                "the row is longer than {MAX_ROW_BYTES} bytes"
            )));
            return;
        }
        let row = match self.options.format {
            ImportFormat::Csv | ImportFormat::Xlsx => self.csv_row(&text),
            ImportFormat::Ndjson => ndjson_row(&text, self.options.country),
        };
        match row {
            Ok(r) => {
                batch.rows.push(r);
                batch.lines.push(line);
            }
            Err(reason) => batch.rejects.push(reject(reason)),
        }
    }

    /// Why a row has no phone: no column maps to it, or (the header read as one column that
    /// holds another separator) the file is split on the wrong character.
    fn no_phone(&self) -> String {
        let header = self.header.as_deref().unwrap_or_default();
        if let [(one, _)] = header
            && let Some(other) = [Separator::Semicolon, Separator::Tab, Separator::Comma]
                .into_iter()
                .find(|s| s.byte() != self.options.sep() && one.contains(s.char()))
        {
            return format!(
                "the row has no phone number: the header reads as one column, and it holds `{}`; the file seems separated by {} (set the separator to `{}`)",
                other.char().escape_default(),
                other.as_str(),
                other.as_str()
            );
        }
        "the row has no phone number (map a column to `phone`)".to_owned()
    }

    fn csv_row(&self, text: &str) -> Result<ContactUpsert, String> {
        let header = self.header.as_deref().unwrap_or_default();
        let cells = split_cells(text, self.options.sep());
        if cells.len() > header.len() {
            return Err(format!(
                "the row has {} cells but the header names {} columns",
                cells.len(),
                header.len()
            ));
        }
        let mut row = ContactUpsert::default();
        let mut phone = None;
        for ((column, map), cell) in header.iter().zip(cells.iter()) {
            let (target, kind) = match map {
                Some(m) => (m.tag.as_str(), m.kind),
                None => (column.as_str(), TagType::String),
            };
            if target.is_empty() {
                continue;
            }
            match target.to_ascii_lowercase().as_str() {
                "phone" => phone = Some(cell.trim().to_owned()).filter(|s| !s.is_empty()),
                "bsuid" => {
                    row.bsuid = import_bsuid(cell)?;
                }
                "name" => row.name = Some(cell.trim().to_owned()).filter(|s| !s.is_empty()),
                "locale" => row.locale = Some(cell.trim().to_owned()).filter(|s| !s.is_empty()),
                "timezone" => row.timezone = Some(cell.trim().to_owned()).filter(|s| !s.is_empty()),
                "subscription" if !cell.trim().is_empty() => {
                    let state = subscription_of(cell).ok_or_else(|| {
                        format!(
                            "bad subscription `{}`: use opted_in or opted_out",
                            cell.trim()
                        )
                    })?;
                    row.subscription = Some(SubscriptionChange {
                        state,
                        source: "import".into(),
                        note: None,
                    });
                }
                "subscription" => {}
                _ => {
                    check_tag_name(target)?;
                    if let Some(v) = kind
                        .read(cell)
                        .map_err(|e| format!("bad value for tag `{target}`: {e}"))?
                    {
                        check_tag_value(target, &v)?;
                        row.tags.insert(target.to_owned(), Some(v));
                    }
                }
            }
        }
        match (phone, &row.bsuid) {
            (Some(phone), _) => {
                let phone = E164::parse_in(&phone, self.options.country)
                    .map_err(|e| format!("bad phone number: {e}"))?;
                row.phone = phone.as_str().to_owned();
                row.wa_id = Some(phone.wa_id());
            }
            // Known by its business-scoped user id alone (META_2026 §3.8).
            (None, Some(bsuid)) => row.phone = bsuid.clone(),
            (None, None) => {
                return Err(self.no_phone());
            }
        }
        Ok(row)
    }
}

fn ndjson_row(text: &str, country: Option<Region>) -> Result<ContactUpsert, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not a JSON object: {e}"))?;
    let Value::Object(obj) = v else {
        return Err("not a JSON object".into());
    };
    let s = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_owned);
    let bsuid = match s("bsuid") {
        Some(b) => import_bsuid(&b)?,
        None => None,
    };
    let phone = obj.get("phone").filter(|p| !p.is_null()).map(|p| match p {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    });
    let (address, wa_id) = match (phone, &bsuid) {
        (Some(phone), _) => {
            let phone =
                E164::parse_in(&phone, country).map_err(|e| format!("bad phone number: {e}"))?;
            (phone.as_str().to_owned(), Some(phone.wa_id()))
        }
        (None, Some(b)) => (b.clone(), None),
        (None, None) => return Err("the row has no `phone`".into()),
    };
    let tags = match obj.get("tags") {
        None | Some(Value::Null) => TagPatch::new(),
        Some(Value::Object(t)) => tag_patch(t).map_err(|e| e.message)?,
        Some(_) => return Err("`tags` is not an object".into()),
    };
    let subscription = match s("subscription") {
        None => None,
        Some(v) => Some(SubscriptionChange {
            state: subscription_of(&v)
                .ok_or_else(|| format!("bad subscription `{v}`: use opted_in or opted_out"))?,
            source: "import".into(),
            note: None,
        }),
    };
    Ok(ContactUpsert {
        wa_id,
        phone: address,
        bsuid,
        name: s("name"),
        locale: s("locale"),
        timezone: s("timezone"),
        tags,
        subscription,
    })
}

/// An import's `bsuid` cell: empty is none; anything else must read as a BSUID.
fn import_bsuid(cell: &str) -> Result<Option<String>, String> {
    let cell = cell.trim();
    if cell.is_empty() {
        return Ok(None);
    }
    let b = Bsuid::parse(cell).map_err(|e| format!("bad bsuid: {e}"))?;
    if b.is_parent() {
        return Err(format!(
            "bad bsuid: `{b}` is a parent BSUID; give the customer's own BSUID"
        ));
    }
    Ok(Some(b.as_str().to_owned()))
}

/// Splits one comma-separated record (RFC 4180: quoted cells, `""` for a quote, newlines
/// inside quotes).
pub fn split_csv(record: &str) -> Vec<String> {
    split_cells(record, b',')
}

/// Splits one CSV record whose cells are separated by `sep` (an ASCII byte), as
/// [`split_csv`] splits on commas.
pub fn split_cells(record: &str, sep: u8) -> Vec<String> {
    let sep = char::from(sep);
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut quoted = false;
    let mut chars = record.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            (true, '"') => quoted = false,
            (false, '"') if cell.is_empty() => quoted = true,
            (false, c) if c == sep => cells.push(std::mem::take(&mut cell)),
            (_, c) => cell.push(c),
        }
    }
    cells.push(cell);
    cells
}

/// Column names of a CSV header line, for the console's mapping form.
pub fn csv_header(line: &str) -> Vec<String> {
    split_csv(line.trim_end_matches(['\r', '\n']))
        .into_iter()
        .map(|s| s.trim().to_owned())
        .collect()
}

/// At most `max` characters of `s`, with an ellipsis when cut.
fn excerpt(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_owned(),
        Some((byte, _)) => format!("{}…", &s[..byte]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells() {
        assert_eq!(
            split_csv(r#"a,"b,c","d""e",,"#),
            ["a", "b,c", "d\"e", "", ""]
        );
        assert_eq!(split_csv("\"multi\nline\",x"), ["multi\nline", "x"]);
    }

    fn preview_lines(format: ImportFormat, body: &str) -> Vec<(u64, Result<String, String>)> {
        let options = ImportOptions {
            format,
            ..ImportOptions::default()
        };
        preview_import(&options, body.as_bytes(), true, usize::MAX)
            .expect("text previews")
            .rows
            .into_iter()
            .map(|r| (r.line, r.outcome.map(|u| u.phone)))
            .collect()
    }

    /// Found by fuzzing: a `"` inside an unquoted cell opened a quoted section in the row
    /// reader (but not in the cell splitter), so one `5" screen` swallowed the rows after it,
    /// up to the next quote or the end of the file, into one rejected row.
    #[test]
    fn a_quote_inside_an_unquoted_cell_is_an_ordinary_character() {
        let rows = preview_lines(
            ImportFormat::Csv,
            "phone,size\n+4915112345678,5\" screen\n+4915112345679,7 inch\n+4915112345680,\"a \"\"b\"\"\nc\"\n",
        );
        assert_eq!(
            rows,
            [
                (2, Ok("+4915112345678".to_owned())),
                (3, Ok("+4915112345679".to_owned())),
                (4, Ok("+4915112345680".to_owned())),
            ]
        );
        // The header's quote is ordinary too, and a byte order mark starts no cell.
        let rows = preview_lines(
            ImportFormat::Csv,
            "\u{feff}\"phone\nnumber\",x\"y\n+4915112345678,1\n",
        );
        assert_eq!(
            rows,
            [(
                3,
                Err("the row has no phone number (map a column to `phone`)".to_owned())
            )]
        );
        // The start of a byte order mark that does not go on is content: its quote is ordinary.
        let options = ImportOptions {
            format: ImportFormat::Csv,
            encoding: Some(TextEncoding::Utf8),
            ..ImportOptions::default()
        };
        let rows = preview_import(&options, b"\xef\"\n,\n", true, usize::MAX)
            .expect("text previews")
            .rows;
        assert_eq!(rows.iter().map(|r| r.line).collect::<Vec<_>>(), [2]);
    }

    /// Found by fuzzing: serde_json read `2.1874407370955165` one unit in the last place off
    /// and wrote it back as text that read as yet another float, so an exported and
    /// re-imported float tag drifted (the workspace now enables `float_roundtrip`).
    #[test]
    fn ndjson_float_tags_read_back_exactly() {
        let options = ImportOptions {
            format: ImportFormat::Ndjson,
            ..ImportOptions::default()
        };
        let tag = |body: &str| {
            let rows = preview_import(&options, body.as_bytes(), true, 1)
                .expect("text previews")
                .rows;
            match &rows[0].outcome {
                Ok(row) => row.tags["c"].clone(),
                Err(e) => panic!("{e}"),
            }
        };
        let first = tag(r#"{"phone":"+4915112345678","tags":{"c":2.1874407370955165}}"#);
        assert_eq!(first, Some(TagValue::Float(2.1874407370955165)));
        let written = serde_json::json!({"phone": "+4915112345678", "tags": {"c": first}});
        assert_eq!(tag(&written.to_string()), first);
    }

    #[test]
    fn spreadsheet_csv_files_preview_as_detected_and_overrides_change_the_reading() {
        let (cp1251, _, _) = encoding_rs::WINDOWS_1251
            .encode("Телефон;Имя;Город\r\n8 (916) 123-45-67;Иван Петров;Москва\r\n");
        let options = ImportOptions {
            columns: vec![
                ColumnMap::parse("Телефон:phone").unwrap(),
                ColumnMap::parse("Имя:name").unwrap(),
            ],
            country: Some(Region::parse("RU").unwrap()),
            ..ImportOptions::default()
        };
        let p = preview_import(&options, &cp1251, true, 10).unwrap();
        assert_eq!(p.read_as.encoding, Some(TextEncoding::Windows1251));
        assert_eq!(p.read_as.separator, Some(Separator::Semicolon));
        assert_eq!(p.columns, ["Телефон", "Имя", "Город"]);
        let row = p.rows[0].outcome.as_ref().expect("imports");
        assert_eq!(row.phone, "+79161234567");
        assert_eq!(row.name.as_deref(), Some("Иван Петров"));
        assert_eq!(row.tags["Город"], Some(TagValue::String("Москва".into())));
        // Told it is commas: one column, and the reason says what to change.
        let commas = ImportOptions {
            separator: Some(Separator::Comma),
            ..options.clone()
        };
        let p = preview_import(&commas, &cp1251, true, 10).unwrap();
        assert_eq!(p.columns.len(), 1);
        let e = p.rows[0].outcome.as_ref().unwrap_err();
        assert!(e.contains("separated by semicolon"), "{e}");
        // Told it is Windows-1252: the names come out as Latin letters, not Cyrillic.
        let latin = ImportOptions {
            encoding: Some(TextEncoding::Windows1252),
            ..ImportOptions::default()
        };
        let p = preview_import(&latin, &cp1251, true, 10).unwrap();
        assert!(!p.columns[0].contains('Т'), "{:?}", p.columns);
        // UTF-16 LE with its byte order mark, tab-separated (Excel's "Unicode text").
        let utf16: Vec<u8> = [0xFEFFu16]
            .into_iter()
            .chain("phone\tname\r\n+4915112345678\tJürgen\r\n".encode_utf16())
            .flat_map(u16::to_le_bytes)
            .collect();
        let p = preview_import(&ImportOptions::default(), &utf16, true, 10).unwrap();
        assert_eq!(p.read_as.encoding, Some(TextEncoding::Utf16Le));
        assert_eq!(p.read_as.separator, Some(Separator::Tab));
        let row = p.rows[0].outcome.as_ref().expect("imports");
        assert_eq!(
            (row.phone.as_str(), row.name.as_deref()),
            ("+4915112345678", Some("Jürgen"))
        );
    }

    #[test]
    fn options_keep_what_was_detected_and_old_jobs_read_as_before() {
        let options = ImportOptions {
            format: ImportFormat::Xlsx,
            encoding: Some(TextEncoding::Windows1251),
            separator: Some(Separator::Tab),
            country: Some(Region::parse("DE").unwrap()),
            sheet: Some("Kunden".into()),
            columns: vec![ColumnMap::parse("a:b:integer").unwrap()],
        };
        let back = ImportOptions::from_stored(&options.to_stored()).unwrap();
        assert_eq!(back.to_stored(), options.to_stored());
        let auto = ImportOptions::from_stored(&ImportOptions::default().to_stored()).unwrap();
        assert_eq!((auto.encoding, auto.separator), (None, None));
        let old = ImportOptions::from_stored(r#"{"format":"csv","map":[]}"#).unwrap();
        assert_eq!(
            (old.encoding, old.separator),
            (Some(TextEncoding::Utf8), Some(Separator::Comma))
        );
    }

    #[test]
    fn column_maps() {
        let m = ColumnMap::parse("Visits:visits:integer").unwrap();
        assert_eq!(m.tag, "visits");
        assert_eq!(m.kind, TagType::Integer);
        assert_eq!(ColumnMap::parse("a:b").unwrap().kind, TagType::String);
        assert!(ColumnMap::parse("a:b:wat").is_err());
    }

    mod round_trip {
        use super::super::*;
        use proptest::prelude::*;

        /// Numbers `E164::parse` keeps as written.
        const PHONES: [&str; 4] = [
            "+4915112345678",
            "+14155552671",
            "+447911123456",
            "+33612345678",
        ];

        #[derive(Debug, Clone)]
        struct Row {
            phone: &'static str,
            name: Option<String>,
            visits: Option<i64>,
            price: Option<f64>,
            vip: Option<bool>,
            since: Option<time::Date>,
            seen: Option<time::OffsetDateTime>,
            langs: Vec<String>,
            city: Option<String>,
            subscription: Option<Subscription>,
        }

        /// Text as a cell reads it back: trimmed, and not empty.
        fn cell_text() -> impl Strategy<Value = String> {
            "[a-zA-Z\u{e9}\u{df} ,;\"\n\r|{}-]{1,10}"
                .prop_map(|s| s.trim().to_owned())
                .prop_filter("not empty", |s| !s.is_empty())
        }

        fn row() -> impl Strategy<Value = Row> {
            (
                prop::sample::select(PHONES.to_vec()),
                prop::option::of(cell_text()),
                prop::option::of(any::<i64>()),
                prop::option::of(any::<f64>().prop_filter("finite", |f| f.is_finite())),
                prop::option::of(any::<bool>()),
                prop::option::of(
                    (0i32..=9999, 1u16..=365)
                        .prop_map(|(y, d)| time::Date::from_ordinal_date(y, d).unwrap()),
                ),
                prop::option::of(
                    (0i64..253_402_200_000, -50_400i32..50_400).prop_map(|(s, o)| {
                        time::OffsetDateTime::from_unix_timestamp(s)
                            .unwrap()
                            .to_offset(time::UtcOffset::from_whole_seconds(o - o % 60).unwrap())
                    }),
                ),
                prop::collection::vec(
                    "[a-z\u{e9} ]{1,5}"
                        .prop_map(|s| s.trim().to_owned())
                        .prop_filter("item", |s| !s.is_empty()),
                    0..3,
                ),
                prop::option::of(cell_text()),
                prop::option::of(prop::sample::select(vec![
                    Subscription::OptedIn,
                    Subscription::OptedOut,
                ])),
            )
                .prop_map(
                    |(phone, name, visits, price, vip, since, seen, langs, city, subscription)| {
                        Row {
                            phone,
                            name,
                            visits,
                            price,
                            vip,
                            since,
                            seen,
                            langs,
                            city,
                            subscription,
                        }
                    },
                )
        }

        fn expected_tags(r: &Row, typed: bool) -> TagPatch {
            let mut t = TagPatch::new();
            let mut put = |k: &str, v: Option<TagValue>| {
                if let Some(v) = v {
                    t.insert(k.to_owned(), Some(v));
                }
            };
            put("visits", r.visits.map(TagValue::Integer));
            put("price", r.price.map(TagValue::Float));
            put("vip", r.vip.map(TagValue::Boolean));
            if typed {
                put("since", r.since.map(TagValue::Date));
                put("seen", r.seen.map(TagValue::DateTime));
            }
            put(
                "langs",
                (!r.langs.is_empty()).then(|| TagValue::List(r.langs.clone())),
            );
            put("city", r.city.clone().map(TagValue::String));
            t
        }

        fn check(
            rows: &[Row],
            got: ImportPreview,
            typed: bool,
            first_line: u64,
            line_of: &[u64],
        ) -> Result<(), TestCaseError> {
            prop_assert_eq!(got.rows.len(), rows.len());
            for ((r, p), line) in rows.iter().zip(&got.rows).zip(line_of) {
                prop_assert_eq!(p.line, first_line + line);
                let u = match &p.outcome {
                    Ok(u) => u,
                    Err(e) => return Err(TestCaseError::fail(format!("{r:?} rejected: {e}"))),
                };
                prop_assert_eq!(u.phone.as_str(), r.phone);
                prop_assert_eq!(&u.name, &r.name);
                prop_assert_eq!(&u.tags, &expected_tags(r, typed));
                prop_assert_eq!(u.subscription.as_ref().map(|s| s.state), r.subscription);
            }
            Ok(())
        }

        proptest! {
            /// Rows written as CSV (cells quoted when they need it, `\n` or `\r\n`, with or
            /// without a byte order mark) import as the same contacts, on their lines.
            #[test]
            fn csv_rows_round_trip(rows in prop::collection::vec(row(), 1..6), crlf in any::<bool>(), bom in any::<bool>()) {
                let end = if crlf { "\r\n" } else { "\n" };
                let mut body = String::new();
                if bom {
                    body.push('\u{feff}');
                }
                body.push_str("Phone,Name,visits,price,vip,since,seen,langs,city,subscription");
                body.push_str(end);
                let mut lines = Vec::new();
                let mut line = 0;
                for r in &rows {
                    lines.push(line);
                    let cells = [
                        r.phone.to_owned(),
                        r.name.clone().unwrap_or_default(),
                        r.visits.map(|v| v.to_string()).unwrap_or_default(),
                        r.price.map(|v| v.to_string()).unwrap_or_default(),
                        r.vip.map(|v| v.to_string()).unwrap_or_default(),
                        r.since.map(|d| TagValue::Date(d).as_text()).unwrap_or_default(),
                        r.seen.map(|d| TagValue::DateTime(d).as_text()).unwrap_or_default(),
                        r.langs.join(";"),
                        r.city.clone().unwrap_or_default(),
                        r.subscription.map(|s| s.as_str().to_owned()).unwrap_or_default(),
                    ];
                    let record = cells.iter().map(|c| csv_cell(c)).collect::<Vec<_>>().join(",");
                    line += 1 + record.matches('\n').count() as u64;
                    body.push_str(&record);
                    body.push_str(end);
                }
                let options = ImportOptions {
                    format: ImportFormat::Csv,
                    columns: [
                        "Phone:phone", "Name:name", "visits:visits:integer", "price:price:float",
                        "vip:vip:boolean", "since:since:date", "seen:seen:datetime", "langs:langs:list",
                    ]
                    .iter()
                    .map(|m| ColumnMap::parse(m).unwrap())
                    .collect(),
                    ..ImportOptions::default()
                };
                let got = preview_import(&options, body.as_bytes(), true, usize::MAX).expect("text previews");
                prop_assert_eq!(&got.columns[..2], &["Phone".to_owned(), "Name".to_owned()]);
                check(&rows, got, true, 2, &lines)?;
            }

            /// Rows written as NDJSON import as the same contacts.
            #[test]
            fn ndjson_rows_round_trip(rows in prop::collection::vec(row(), 1..6)) {
                let mut body = String::new();
                for r in &rows {
                    let mut v = serde_json::json!({"phone": r.phone, "tags": expected_tags(r, false)});
                    if let Some(n) = &r.name {
                        v["name"] = n.clone().into();
                    }
                    if let Some(s) = r.subscription {
                        v["subscription"] = s.as_str().into();
                    }
                    body.push_str(&v.to_string());
                    body.push('\n');
                }
                let options = ImportOptions { format: ImportFormat::Ndjson, ..ImportOptions::default() };
                let got = preview_import(&options, body.as_bytes(), true, usize::MAX).expect("text previews");
                let lines: Vec<u64> = (0..rows.len() as u64).collect();
                check(&rows, got, false, 1, &lines)?;
            }

            /// Any bytes: every row or rejection on its own line inside the upload, in order.
            #[test]
            fn any_upload_reads_to_rows_on_distinct_lines(body in prop::collection::vec(prop::sample::select(b"ab,\"\n\r+49151;x\xef\xbb\xbf{}".to_vec()), 0..200), csv in any::<bool>()) {
                let options = ImportOptions {
                    format: if csv { ImportFormat::Csv } else { ImportFormat::Ndjson },
                    encoding: Some(TextEncoding::Utf8),
                    separator: Some(Separator::Comma),
                    ..ImportOptions::default()
                };
                let got = preview_import(&options, &body, true, usize::MAX).expect("text previews");
                let total = 1 + body.iter().filter(|&&b| b == b'\n').count() as u64;
                let lines: Vec<u64> = got.rows.iter().map(|r| r.line).collect();
                prop_assert!(lines.windows(2).all(|w| w[0] < w[1]), "{:?}", lines);
                prop_assert!(lines.iter().all(|&l| (1..=total).contains(&l)), "{:?} of {}", lines, total);
            }
        }
    }
}
